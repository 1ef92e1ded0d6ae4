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
 *
 * The barycentre slabs (hmmrnn_absorbed_bary*) also sum z @ points over each row's live entries,
 * which at a loss's last temperature replaces most of a dense GEMM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* 2**f on [-0.5, 0.5]: a degree-6 fit of least maximum relative error, 1.9e-9 (under 0.02 of
 * a float32 ulp) before rounding. */
#define C1 0.6931472057373574f
#define C2 0.24022646890617969f
#define C3 0.05550328776772512f
#define C4 0.009618488958161201f
#define C5 0.0013399931297551047f
#define C6 0.0001534581189882018f
/* 1.5 * 2**23: adding then subtracting it rounds a float to the nearest integer. */
#define ROUNDER 12582912.0f

static inline float exp2_flush(float t) {
    /* Below -125 the result is flushed at the end, whatever the bits; NaN runs through p. */
    float u = t > 128.0f ? 128.0f : t;
    float r = (u + ROUNDER) - ROUNDER;
    float f = u - r;
    float p = C6;
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

/* One row: e_j = 2 ** (a + gs_j - scale * c_j), their sum returned, added into col_sums and
 * written to z if asked for. */
static inline __attribute__((always_inline)) float row_pass(
    const void *restrict c, int64_t cols, const float a, const float *restrict gs, float scale,
    float *restrict z, float *restrict col_sums, const int packed, const int want_z,
    const int want_cols) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < cols; ++j) {
        float e = exp2_flush(a + gs[j] - scale * entry(c, j, packed));
        acc += e;
        if (want_cols) col_sums[j] += e;
        if (want_z) z[j] = e;
    }
    return acc;
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
        row_sums[i] = row_pass(c, cols, fs[i], gs, scale, want_z ? z + i * ldz : z, col_sums,
                               packed, want_z, want_cols);
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

/* The slabs of a whole update without barycentre: rows [0, n) in slabs of `step` rows, each
 * taken by whichever calling thread asks next (every worker calls this with the same `next`,
 * zero at first), so a stalled core delays nobody. Slab k writes row_sums of its rows and, if
 * col_partials is given, row k of col_partials (n_slabs x m): the column sums of its entries,
 * or for a triangle (the slab starting at the diagonal, rows standing for their mirror images
 * too) those right of its diagonal block, zeros elsewhere. The result depends on neither the
 * number of threads nor which took which slab. */
static inline __attribute__((always_inline)) void update_slabs(
    const void *restrict cost, int64_t ld, int64_t n, int64_t m, int64_t step, int triangle,
    const float *restrict fs, const float *restrict gs, float scale, float *restrict row_sums,
    float *restrict col_partials, int64_t *next, const int packed, const int want_cols) {
    const int64_t width = packed ? 2 : 4;
    for (;;) {
        const int64_t k = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
        const int64_t start = k * step;
        if (start >= n) return;
        const int64_t rows = start + step < n ? step : n - start;
        const int64_t first = triangle ? start : 0;
        float *col = want_cols ? col_partials + k * m : NULL;
        slab((const char *)cost + (start * ld + first) * width, ld, rows, m - first, fs + start,
             gs + first, scale, NULL, 0, row_sums + start, want_cols ? col + first : NULL,
             packed, 0, want_cols);
        if (want_cols && triangle) memset(col, 0, (size_t)(start + rows) * sizeof *col);
    }
}

#define DISPATCH_UPDATE(packed)                                                               \
    if (col_partials)                                                                         \
        update_slabs(cost, ld, n, m, step, triangle, fs, gs, scale, row_sums, col_partials,  \
                     next, packed, 1);                                                        \
    else                                                                                      \
        update_slabs(cost, ld, n, m, step, triangle, fs, gs, scale, row_sums, col_partials,  \
                     next, packed, 0);

/* A whole update over a float32 cost (n x m, rows ld entries apart). */
void hmmrnn_absorbed_update(const float *cost, int64_t ld, int64_t n, int64_t m, int64_t step,
                            int32_t triangle, const float *fs, const float *gs, float scale,
                            float *row_sums, float *col_partials, int64_t *next) {
    DISPATCH_UPDATE(0)
}

/* The same over a bfloat16 cost. */
void hmmrnn_absorbed_update_bf16(const uint16_t *cost, int64_t ld, int64_t n, int64_t m,
                                 int64_t step, int32_t triangle, const float *fs,
                                 const float *gs, float scale, float *row_sums,
                                 float *col_partials, int64_t *next) {
    DISPATCH_UPDATE(1)
}

/* Floats per vector: the points' rows are padded to whole vectors. */
#define LANES 16

/* The indices of the live (non-zero) entries of one row, in order, into idx (room for cols + 16);
 * how many. Entries are >= 0 or NaN (which the caller's range check rejects), so a zero bit
 * pattern is the only dead one. Without branches: which entries live is close to random. */
static int64_t live_indices(const float *restrict z, int64_t cols, int32_t *restrict idx) {
    int64_t n = 0, j = 0;
#ifdef __AVX512F__
    const __m512i step = _mm512_set1_epi32(16);
    __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; j + 16 <= cols; j += 16) {
        const __m512i v = _mm512_loadu_si512((const void *)(z + j));
        const __mmask16 live = _mm512_test_epi32_mask(v, v);
        _mm512_storeu_si512((void *)(idx + n), _mm512_maskz_compress_epi32(live, lanes));
        n += __builtin_popcount((unsigned)live);
        lanes = _mm512_add_epi32(lanes, step);
    }
#endif
    const uint32_t *restrict bits = (const uint32_t *)z;
    for (; j < cols; ++j) {
        idx[n] = (int32_t)j;
        n += bits[j] != 0;
    }
    return n;
}

/* One vector of LANES floats (GCC and clang vector extensions: whatever the target's SIMD is). */
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

/* An unaligned load of one vector (a macro: a function returning a vector would change the ABI
 * where the target lacks vectors that wide, and the compiler warns of it). */
#define LOAD(p)                                \
    ({                                         \
        vec loaded_;                           \
        memcpy(&loaded_, (p), sizeof loaded_); \
        loaded_;                               \
    })

/* bary[0:width] = sum_k z_idx[k] points_idx[k][0:width] over n live entries, the NV vectors
 * (NV * LANES >= width) of each point's slice held in registers; point rows are ldp apart. */
#define SPARSE_ROW(NV)                                                                        \
    static void sparse_row_##NV(const float *restrict z, const int32_t *restrict idx,         \
                                int64_t n, const float *restrict points, int64_t ldp,         \
                                int64_t width, float *restrict bary) {                        \
        vec acc[NV];                                                                          \
        for (int v = 0; v < NV; ++v) acc[v] = (vec){0};                                       \
        for (int64_t k = 0; k < n; ++k) {                                                     \
            const int64_t j = idx[k];                                                         \
            const vec e = (vec){0} + z[j];                                                    \
            const float *restrict p = points + j * ldp;                                       \
            for (int v = 0; v < NV; ++v) acc[v] += e * LOAD(p + v * LANES);                   \
        }                                                                                     \
        float out[NV * LANES];                                                                \
        memcpy(out, acc, sizeof out);                                                         \
        memcpy(bary, out, (size_t)width * sizeof *bary);                                      \
    }

SPARSE_ROW(1)
SPARSE_ROW(2)
SPARSE_ROW(3)
SPARSE_ROW(4)
SPARSE_ROW(5)
SPARSE_ROW(6)
SPARSE_ROW(7)
SPARSE_ROW(8)

/* Vectors of a point summed per pass over the live entries: wider points take several passes
 * over the same (L1-resident) list of live entries, MAX_VECTORS * LANES floats at a time. */
#define MAX_VECTORS 8
typedef void (*sparse_fn)(const float *, const int32_t *, int64_t, const float *, int64_t,
                          int64_t, float *);
static const sparse_fn SPARSE_ROWS[MAX_VECTORS + 1] = {
    NULL, sparse_row_1, sparse_row_2, sparse_row_3, sparse_row_4,
    sparse_row_5, sparse_row_6, sparse_row_7, sparse_row_8};

/* bary (dim floats) = sum of z_j points_j over the n live entries listed in idx. */
static void sparse_row(const float *restrict z, const int32_t *restrict idx, int64_t n,
                       const float *restrict points, int64_t dim, int64_t ldp,
                       float *restrict bary) {
    for (int64_t v0 = 0; v0 * LANES < dim; v0 += MAX_VECTORS) {
        const int64_t left = ldp / LANES - v0;
        const int64_t vectors = left < MAX_VECTORS ? left : MAX_VECTORS;
        const int64_t first = v0 * LANES;
        const int64_t width = dim - first < vectors * LANES ? dim - first : vectors * LANES;
        SPARSE_ROWS[vectors](z, idx, n, points + first, ldp, width, bary + first);
    }
}

/* The slab of a barycentre update. Rows with at most max_live live entries (at the final
 * temperatures of a loss, most rows: 95-100% of the entries flush to zero) get their bary row,
 * z @ points not yet divided by the row sum, summed over those entries alone while the row is
 * in L1. The others are left to the caller's dense GEMM: their entries go to z's rows 0, 1, ...
 * in order and their indices to dense_rows. Returns how many there are (all rows, should the
 * index scratch not be allocated). */
static inline __attribute__((always_inline)) int64_t bary_slab(
    const void *restrict cost, int64_t ld, int64_t rows, int64_t cols,
    const float *restrict fs, const float *restrict gs, float scale, float *restrict z,
    int64_t ldz, float *restrict row_sums, float *restrict col_sums,
    const float *restrict points, int64_t dim, int64_t ldp, float *restrict bary,
    int64_t max_live, int64_t *restrict dense_rows, const int packed, const int want_cols) {
    const int64_t width = packed ? 2 : 4;
    int32_t *idx = malloc((size_t)(cols + LANES) * sizeof *idx);
    int64_t dense = 0;
    if (want_cols) memset(col_sums, 0, (size_t)cols * sizeof *col_sums);
    for (int64_t i = 0; i < rows; ++i) {
        const void *restrict c = (const char *)cost + i * ld * width;
        float *restrict zi = z + dense * ldz; /* a sparse row's slot is reused by the next row */
        row_sums[i] = row_pass(c, cols, fs[i], gs, scale, zi, col_sums, packed, 1, want_cols);
        const int64_t live = idx ? live_indices(zi, cols, idx) : max_live + 1;
        if (live <= max_live)
            sparse_row(zi, idx, live, points, dim, ldp, bary + i * dim);
        else
            dense_rows[dense++] = i;
    }
    free(idx);
    return dense;
}

#define DISPATCH_BARY(packed)                                                                  \
    return col_sums ? bary_slab(cost, ld, rows, cols, fs, gs, scale, z, ldz, row_sums,         \
                                col_sums, points, dim, ldp, bary, max_live, dense_rows, packed, 1)  \
                    : bary_slab(cost, ld, rows, cols, fs, gs, scale, z, ldz, row_sums,         \
                                col_sums, points, dim, ldp, bary, max_live, dense_rows, packed, 0);

/* Barycentre slabs over a float32 cost; points is (cols x ldp) float32, its rows' first dim
 * entries the points and the rest zeros, ldp a multiple of 16; bary is (rows x dim). */
int64_t hmmrnn_absorbed_bary(const float *cost, int64_t ld, int64_t rows, int64_t cols,
                             const float *fs, const float *gs, float scale, float *z,
                             int64_t ldz, float *row_sums, float *col_sums,
                             const float *points, int64_t dim, int64_t ldp, float *bary,
                             int64_t max_live, int64_t *dense_rows) {
    DISPATCH_BARY(0)
}

/* The same over a bfloat16 cost. */
int64_t hmmrnn_absorbed_bary_bf16(const uint16_t *cost, int64_t ld, int64_t rows, int64_t cols,
                                  const float *fs, const float *gs, float scale, float *z,
                                  int64_t ldz, float *row_sums, float *col_sums,
                                  const float *points, int64_t dim, int64_t ldp,
                                  float *bary, int64_t max_live, int64_t *dense_rows) {
    DISPATCH_BARY(1)
}
