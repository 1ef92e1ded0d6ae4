/* One slab of the absorbed Sinkhorn update in a single pass (see hmmrnn/sinkhorn_kernel.py).
 *
 * For rows i of the slab and columns j:
 *     e_ij = 2 ** (fs_i + gs_j - scale * cost_ij)
 *     row_sums[i] = sum_j e_ij,  col_sums[j] = sum_i e_ij,  z_ij = e_ij (each if asked for).
 *
 * Eager torch needs five passes over each block for this (add, add, exp2, row sum, column sum);
 * here the cost entry is read once and e_ij never leaves a register. exp2 below is exact to
 * about one float32 ulp, flushes results under 2**-125 to zero (as the eager path's workers do),
 * gives +inf above 2**128 and keeps NaN, so the caller's range check sees what eager would.
 */
#include <stdint.h>
#include <string.h>

/* 2**f on [-0.5, 0.5]: Taylor coefficients of exp(f ln 2), truncation error below 6e-9. */
#define C1 0.693147180559945f
#define C2 0.240226506959101f
#define C3 0.0555041086648216f
#define C4 0.00961812910762848f
#define C5 0.00133335581464284f
#define C6 0.000154035303933816f
#define C7 1.52527338040598e-05f
/* 1.5 * 2**23: adding then subtracting it rounds a float to the nearest integer. */
#define ROUNDER 12582912.0f

static inline float exp2_flush(float t) {
    /* Below -125 the result is flushed at the end, whatever the bits; NaN runs through p. */
    float u = t > 128.0f ? 128.0f : t;
    float r = (u + ROUNDER) - ROUNDER;
    float f = u - r;
    float p = C7;
    p = p * f + C6;
    p = p * f + C5;
    p = p * f + C4;
    p = p * f + C3;
    p = p * f + C2;
    p = p * f + C1;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)r + 127) << 23; /* r = 128 gives the bits of +inf */
    float s;
    memcpy(&s, &bits, sizeof s);
    float e = p * s;
    return t < -125.0f ? 0.0f : e;
}

/* The cost entry j of a row: float32, or bfloat16 (the top half of a float32's bits), which
 * holds the costs of binary clouds exactly and halves what each pass reads. */
static inline float entry(const void *restrict row, int64_t j, const int packed) {
    if (!packed) return ((const float *)row)[j];
    uint32_t bits = (uint32_t)((const uint16_t *)row)[j] << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline __attribute__((always_inline)) void slab(
    const void *restrict cost, int64_t ld, int64_t rows, int64_t cols,
    const float *restrict fs, const float *restrict gs, float scale,
    float *restrict z, int64_t ldz, float *restrict row_sums, float *restrict col_sums,
    const int packed, const int want_z, const int want_cols) {
    const int64_t width = packed ? 2 : 4;
    if (want_cols) memset(col_sums, 0, (size_t)cols * sizeof *col_sums);
    for (int64_t i = 0; i < rows; ++i) {
        const void *restrict c = (const char *)cost + i * ld * width;
        float *restrict zi = want_z ? z + i * ldz : z;
        const float a = fs[i];
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < cols; ++j) {
            float e = exp2_flush(a + gs[j] - scale * entry(c, j, packed));
            acc += e;
            if (want_cols) col_sums[j] += e;
            if (want_z) zi[j] = e;
        }
        row_sums[i] = acc;
    }
}

#define DISPATCH(packed)                                                                     \
    if (z && col_sums)                                                                       \
        slab(cost, ld, rows, cols, fs, gs, scale, z, ldz, row_sums, col_sums, packed, 1, 1); \
    else if (z)                                                                              \
        slab(cost, ld, rows, cols, fs, gs, scale, z, ldz, row_sums, col_sums, packed, 1, 0); \
    else if (col_sums)                                                                       \
        slab(cost, ld, rows, cols, fs, gs, scale, z, ldz, row_sums, col_sums, packed, 0, 1); \
    else                                                                                     \
        slab(cost, ld, rows, cols, fs, gs, scale, z, ldz, row_sums, col_sums, packed, 0, 0);

/* A float32 cost (ld in entries). z and col_sums may be NULL; all outputs are overwritten. */
void hmmrnn_absorbed_slab(const float *cost, int64_t ld, int64_t rows, int64_t cols,
                          const float *fs, const float *gs, float scale, float *z,
                          int64_t ldz, float *row_sums, float *col_sums) {
    DISPATCH(0)
}

/* The same over a bfloat16 cost. */
void hmmrnn_absorbed_slab_bf16(const uint16_t *cost, int64_t ld, int64_t rows, int64_t cols,
                               const float *fs, const float *gs, float scale, float *z,
                               int64_t ldz, float *row_sums, float *col_sums) {
    DISPATCH(1)
}
