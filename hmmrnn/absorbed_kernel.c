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

/* ---------------------------------------------------------------------------------------------
 * The evaluation's float64 passes over a matching's cost (hmmrnn/match_passes.py).
 *
 * The study's matching and the exact assignment's guess take log-sum-exps of (shift - scale * C)
 * over rows and over columns, build the absorbed kernel exp2(fs_i + gs_j - scale * C_ij) and pick
 * each row's best column. numpy needs four to six passes over each block and, without AVX-512,
 * a scalar libm exp for each entry; here each entry is read once per pass and its exponential is
 * a polynomial in registers. All work in base 2: the caller scales by log2(e).
 *
 * Every entry point takes its rows in slabs of `step` from a counter shared by the calling
 * threads (as hmmrnn_absorbed_update does); each slab writes outputs of its own, so the numbers
 * depend on neither the number of threads nor which took which slab.
 * ------------------------------------------------------------------------------------------- */

/* 2**f on [-0.5, 0.5]: the Taylor series to degree 13 (truncation under 4e-18 relative). */
#define E1 0.69314718055994530942
#define E2 0.24022650695910071233
#define E3 0.055504108664821579953
#define E4 0.009618129107628477162
#define E5 0.0013333558146428443423
#define E6 0.00015403530393381609954
#define E7 0.00001525273380405984028
#define E8 1.3215486790144309488e-6
#define E9 1.0178086009239699727e-7
#define E10 7.0549116208011233299e-9
#define E11 4.4455382718708114976e-10
#define E12 2.5678435993488205142e-11
#define E13 1.3691488853904128881e-12
/* 1.5 * 2**52: adding it rounds a double to an integer, which the sum's low bits then hold. */
#define ROUNDER_D 6755399441055744.0
#define ROUNDER_D_BITS 0x4338000000000000LL

/* 2**t to about one double ulp: 0 below -1022 (no subnormals), +inf above 1024, NaN kept. The
 * integer part comes from the rounder's bits, as AVX2 has no double-to-int64 conversion. */
static inline double exp2_double(double t) {
    double u = t > 1023.0 ? 1023.0 : t;
    u = u < -1022.0 ? -1022.0 : u;
    double v = u + ROUNDER_D;
    double f = u - (v - ROUNDER_D);
    double p = E13;
    p = p * f + E12;
    p = p * f + E11;
    p = p * f + E10;
    p = p * f + E9;
    p = p * f + E8;
    p = p * f + E7;
    p = p * f + E6;
    p = p * f + E5;
    p = p * f + E4;
    p = p * f + E3;
    p = p * f + E2;
    p = p * f + E1;
    p = p * f + 1.0;
    uint64_t k; /* unsigned: a NaN's bits wrap instead of overflowing */
    memcpy(&k, &v, sizeof k);
    uint64_t bits = (k - (uint64_t)ROUNDER_D_BITS + 1023u) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    double e = p * s;
    e = t > 1024.0 ? __builtin_inf() : e;
    return t < -1022.0 ? 0.0 : e;
}

/* The next slab of rows [start, start + *rows) from the shared counter; 0 when none is left. */
static inline int next_slab(int64_t *next, int64_t n, int64_t step, int64_t *k, int64_t *start,
                            int64_t *rows) {
    *k = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
    *start = *k * step;
    if (*start >= n) return 0;
    *rows = *start + step < n ? step : n - *start;
    return 1;
}

/* max_j (shift_j - scale * c_j) over one row (NaN entries skipped). */
static inline double row_top(const double *restrict c, int64_t m, const double *restrict shift,
                             double scale) {
    double t = -__builtin_inf();
#pragma omp simd reduction(max : t)
    for (int64_t j = 0; j < m; ++j) {
        const double z = shift[j] - scale * c[j];
        t = z > t ? z : t;
    }
    return t;
}

/* For each row i: top[i] = max_j (shift_j - scale * c_ij) and
 * sum[i] = sum_j 2 ** (shift_j - scale * c_ij - top[i]); log2 of the row's sum of exponentials
 * is then top[i] + log2(sum[i]). A row is read twice while it is in cache. */
void hmmrnn_match_lse_rows(const double *cost, int64_t ld, int64_t n, int64_t m,
                           const double *shift, double scale, double *top, double *sum,
                           int64_t step, int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        for (int64_t i = start; i < start + rows; ++i) {
            const double *restrict c = cost + i * ld;
            const double t = row_top(c, m, shift, scale);
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < m; ++j) s += exp2_double(shift[j] - scale * c[j] - t);
            top[i] = t;
            sum[i] = s;
        }
    }
}

/* Rows whose column maxima are taken together, while they are in cache; each group costs one
 * rescaling exponential per column (1/16 more exponentials). */
#define GROUP 16

/* The same over columns, slab k giving its partials: tops[k * m + j] = max over the slab's rows
 * of z_ij = shift_i - scale * c_ij and sums[k * m + j] = sum over them of 2 ** (z_ij - tops),
 * the running maximum raised group by group (its new value first, into `peak`, room for m). */
void hmmrnn_match_lse_cols(const double *cost, int64_t ld, int64_t n, int64_t m,
                           const double *shift, double scale, double *tops, double *sums,
                           double *peak, int64_t step, int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        double *restrict top = tops + k * m, *restrict sum = sums + k * m;
        double *restrict high = peak;
        for (int64_t j = 0; j < m; ++j) top[j] = -__builtin_inf(), sum[j] = 0.0;
        for (int64_t g = start; g < start + rows; g += GROUP) {
            const int64_t end = g + GROUP < start + rows ? g + GROUP : start + rows;
            memcpy(high, top, (size_t)m * sizeof *high);
            for (int64_t i = g; i < end; ++i) {
                const double *restrict c = cost + i * ld;
                const double a = shift[i];
#pragma omp simd
                for (int64_t j = 0; j < m; ++j) {
                    double z = a - scale * c[j];
                    high[j] = z > high[j] ? z : high[j];
                }
            }
/* A column still at -inf (every term so far -inf: a zero weight) adds nothing, rather than
 * exp2(-inf - -inf), a NaN that no later term would clear. */
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) {
                sum[j] = top[j] == -__builtin_inf() ? 0.0 : sum[j] * exp2_double(top[j] - high[j]);
                top[j] = high[j];
            }
            for (int64_t i = g; i < end; ++i) {
                const double *restrict c = cost + i * ld;
                const double a = shift[i];
#pragma omp simd
                for (int64_t j = 0; j < m; ++j) {
                    const double e = exp2_double(a - scale * c[j] - top[j]);
                    sum[j] += top[j] == -__builtin_inf() ? 0.0 : e;
                }
            }
        }
    }
}

/* The absorbed kernel out_ij = 2 ** (fs_i + gs_j - scale * c_ij), exponent in double, stored
 * as float32 (over float32's range: +inf). */
void hmmrnn_match_gibbs(const double *cost, int64_t ld, int64_t n, int64_t m, const double *fs,
                        const double *gs, double scale, float *out, int64_t ldo, int64_t step,
                        int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        for (int64_t i = start; i < start + rows; ++i) {
            const double *restrict c = cost + i * ld;
            float *restrict o = out + i * ldo;
            const double a = fs[i];
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) {
                double e = exp2_double(a + gs[j] - scale * c[j]);
                o[j] = e > 3.4028234663852886e38 ? __builtin_inff() : (float)e;
            }
        }
    }
}

/* best[i] = the first j of largest g_j - c_ij (numpy's argmax, for finite values). */
void hmmrnn_match_argmax(const double *cost, int64_t ld, int64_t n, int64_t m, const double *g,
                         int64_t *best, int64_t step, int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        for (int64_t i = start; i < start + rows; ++i) {
            const double *restrict c = cost + i * ld;
            const double t = row_top(c, m, g, 1.0);
            int64_t j = 0;
            while (j < m - 1 && !(g[j] - c[j] == t)) ++j;
            best[i] = j;
        }
    }
}

/* The indices of the non-zero entries of a row mostly zero, as live_indices gives them (room for
 * cols + 8), skipping runs of eight zeros. */
static int64_t few_live_indices(const float *restrict z, int64_t cols, int32_t *restrict idx) {
    const uint32_t *restrict bits = (const uint32_t *)z;
    int64_t n = 0, j = 0;
    for (; j + 8 <= cols; j += 8) {
        if (!(bits[j] | bits[j + 1] | bits[j + 2] | bits[j + 3] | bits[j + 4] | bits[j + 5] |
              bits[j + 6] | bits[j + 7]))
            continue;
        for (int64_t t = j; t < j + 8; ++t) {
            idx[n] = (int32_t)t;
            n += bits[t] != 0;
        }
    }
    for (; j < cols; ++j) {
        idx[n] = (int32_t)j;
        n += bits[j] != 0;
    }
    return n;
}

/* The study kernel's live pattern (CSR, float32 values): the entries with k_ij v_j at least
 * row_cut[i] or k_ij w_i at least col_cut[j], rows in order. What is left out is summed:
 * row_dropped[i] = sum k_ij v_j and col_dropped[j] = sum k_ij w_i over those entries. `scratch`
 * holds a row (m floats); indices and values have room for cap + m + 8. Returns the number
 * kept, or -1 once more than `cap` are. One thread: a few sweeps' time. */
int64_t hmmrnn_match_pattern(const float *kernel, int64_t ld, int64_t n, int64_t m,
                             const double *v, const double *w, const double *row_cut,
                             const double *col_cut, int64_t cap, int64_t *indptr,
                             int32_t *indices, float *values, double *row_dropped,
                             double *col_dropped, float *scratch) {
    int64_t kept = 0;
    memset(col_dropped, 0, (size_t)m * sizeof *col_dropped);
    indptr[0] = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float *restrict k = kernel + i * ld;
        float *restrict live = scratch;
        const double wi = w[i], cut = row_cut[i];
        double dropped = 0.0;
#pragma omp simd reduction(+ : dropped)
        for (int64_t j = 0; j < m; ++j) {
            const double x = k[j] * v[j], y = k[j] * wi;
            const int keep = (x >= cut) | (y >= col_cut[j]);
            live[j] = keep ? k[j] : 0.0f;
            dropped += keep ? 0.0 : x;
            col_dropped[j] += keep ? 0.0 : y;
        }
        const int64_t count = few_live_indices(live, m, indices + kept);
        for (int64_t p = kept; p < kept + count; ++p) values[p] = live[indices[p]];
        kept += count;
        if (kept > cap) return -1;
        row_dropped[i] = dropped;
        indptr[i + 1] = kept;
    }
    return kept;
}

/* One sweep over the live pattern: alpha_i = 1 / sum_j k_ij v_j, then slab k's column partials
 * partials[k * m + j] = sum over its rows of k_ij alpha_i a_i, in double. */
void hmmrnn_match_sparse_sweep(const int64_t *indptr, const int32_t *indices,
                               const float *values, int64_t n, int64_t m, const double *v,
                               const double *a, double *alpha, double *partials, int64_t step,
                               int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        double *restrict acc = partials + k * m;
        memset(acc, 0, (size_t)m * sizeof *acc);
        for (int64_t i = start; i < start + rows; ++i) {
            const int64_t lo = indptr[i], hi = indptr[i + 1];
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t p = lo; p < hi; ++p) s += values[p] * v[indices[p]];
            const double al = 1.0 / s;
            alpha[i] = al;
            const double x = al * a[i];
            for (int64_t p = lo; p < hi; ++p) acc[indices[p]] += values[p] * x;
        }
    }
}

/* ---- The exact assignment's passes (hmmrnn/assignment.py) ---------------------------------- */

/* out[i] = min_j (c_ij - g_j) over each row. */
void hmmrnn_match_row_min(const double *cost, int64_t ld, int64_t n, int64_t m, const double *g,
                          double *out, int64_t step, int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        for (int64_t i = start; i < start + rows; ++i) {
            const double *restrict c = cost + i * ld;
            double low = __builtin_inf();
#pragma omp simd reduction(min : low)
            for (int64_t j = 0; j < m; ++j) {
                const double r = c[j] - g[j];
                low = r < low ? r : low;
            }
            out[i] = low;
        }
    }
}

/* Slab k's column minima partials[k * m + j] = min over its rows of c_ij - u_i. */
void hmmrnn_match_col_min(const double *cost, int64_t ld, int64_t n, int64_t m, const double *u,
                          double *partials, int64_t step, int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        double *restrict low = partials + k * m;
        for (int64_t j = 0; j < m; ++j) low[j] = __builtin_inf();
        for (int64_t i = start; i < start + rows; ++i) {
            const double *restrict c = cost + i * ld;
            const double ui = u[i];
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) {
                const double r = c[j] - ui;
                low[j] = r < low[j] ? r : low[j];
            }
        }
    }
}

/* The keys i * m + j, row by row, of the pairs whose reduced cost r_ij = q_ij - u_i - v_j is not
 * above `limit` (NaN is kept: it never passes a certificate), with q_ij = rint(c_ij * scale)
 * where `rounded`, else c_ij. At most `cap` are written; returns how many there are. */
int64_t hmmrnn_match_pairs(const double *cost, int64_t ld, int64_t n, int64_t m, const double *u,
                           const double *v, double scale, int32_t rounded, double limit,
                           int64_t cap, int64_t *keys, double *scratch) {
    int64_t found = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double *restrict c = cost + i * ld;
        double *restrict r = scratch;
        const double ui = u[i];
        int32_t any = 0;
#pragma omp simd reduction(| : any)
        for (int64_t j = 0; j < m; ++j) {
            const double q = rounded ? __builtin_rint(c[j] * scale) : c[j];
            r[j] = (q - ui) - v[j];
            any |= !(r[j] > limit);
        }
        if (!any) continue;
        for (int64_t j = 0; j < m; ++j) {
            if (!(r[j] > limit)) {
                if (found < cap) keys[found] = i * m + j;
                ++found;
            }
        }
    }
    return found;
}

/* One dense sweep over the float32 study kernel: alpha_i = 1 / sum_j k_ij v_j, then slab k's
 * column partials partials[k * m + j] = sum over its rows of k_ij alpha_i a_i. Products and
 * sums in float32, as BLAS's sgemv takes them; each row is read from memory once (its second
 * use is from cache), four rows a pass so that the partials are updated a quarter as often. */
void hmmrnn_match_dense_sweep(const float *kernel, int64_t ld, int64_t n, int64_t m,
                              const float *v, const double *a, double *alpha, float *partials,
                              int64_t step, int64_t *next) {
    int64_t k, start, rows;
    while (next_slab(next, n, step, &k, &start, &rows)) {
        float *restrict acc = partials + k * m;
        memset(acc, 0, (size_t)m * sizeof *acc);
        int64_t i = start;
        for (; i + 4 <= start + rows; i += 4) {
            const float *restrict r0 = kernel + i * ld, *restrict r1 = r0 + ld;
            const float *restrict r2 = r1 + ld, *restrict r3 = r2 + ld;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (int64_t j = 0; j < m; ++j) {
                s0 += r0[j] * v[j];
                s1 += r1[j] * v[j];
                s2 += r2[j] * v[j];
                s3 += r3[j] * v[j];
            }
            const double al0 = 1.0 / (double)s0, al1 = 1.0 / (double)s1;
            const double al2 = 1.0 / (double)s2, al3 = 1.0 / (double)s3;
            alpha[i] = al0, alpha[i + 1] = al1, alpha[i + 2] = al2, alpha[i + 3] = al3;
            const float x0 = (float)(al0 * a[i]), x1 = (float)(al1 * a[i + 1]);
            const float x2 = (float)(al2 * a[i + 2]), x3 = (float)(al3 * a[i + 3]);
#pragma omp simd
            for (int64_t j = 0; j < m; ++j)
                acc[j] += (r0[j] * x0 + r1[j] * x1) + (r2[j] * x2 + r3[j] * x3);
        }
        for (; i < start + rows; ++i) {
            const float *restrict row = kernel + i * ld;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < m; ++j) s += row[j] * v[j];
            const double al = 1.0 / (double)s;
            alpha[i] = al;
            const float x = (float)(al * a[i]);
#pragma omp simd
            for (int64_t j = 0; j < m; ++j) acc[j] += row[j] * x;
        }
    }
}

/* ---- The exact assignment's repair after a round adds pairs (hmmrnn/assignment.py) --------- */

/* A binary min-heap of (distance, column) with lazy deletion. */
typedef struct {
    double *key;
    int32_t *col;
    int64_t size;
} heap;

static void heap_push(heap *h, double key, int32_t col) {
    int64_t i = h->size++;
    while (i > 0) {
        const int64_t up = (i - 1) / 2;
        if (h->key[up] <= key) break;
        h->key[i] = h->key[up], h->col[i] = h->col[up];
        i = up;
    }
    h->key[i] = key, h->col[i] = col;
}

static void heap_pop(heap *h) {
    const double key = h->key[--h->size];
    const int32_t col = h->col[h->size];
    int64_t i = 0;
    for (;;) {
        int64_t child = 2 * i + 1;
        if (child >= h->size) break;
        if (child + 1 < h->size && h->key[child + 1] < h->key[child]) ++child;
        if (h->key[child] >= key) break;
        h->key[i] = h->key[child], h->col[i] = h->col[child];
        i = child;
    }
    h->key[i] = key, h->col[i] = col;
}

/* Rematch the free rows of an optimal partial assignment, one shortest augmenting path each
 * (Dijkstra over reduced costs w_ij - u_i - v_j >= 0 on the sparse pairs, rows in CSR), the
 * duals updated so that every pair stays >= 0 and the matched ones at 0. Integer-valued double
 * arithmetic throughout (the caller checks the duals' range). Workspace: dist, pred_row (n each),
 * done_cols (n), heap arrays (pairs + n each). Returns 0, or -1 if a free row has no path. */
int64_t hmmrnn_assign_repair(int64_t n, const int64_t *indptr, const int32_t *cols,
                             const double *w, double *u, double *v, int64_t *col_of_row,
                             int64_t *row_of_col, const int64_t *free_rows, int64_t n_free,
                             double *dist, int64_t *pred_row, int32_t *done_cols,
                             uint8_t *state, double *heap_key, int32_t *heap_col) {
    for (int64_t j = 0; j < n; ++j) dist[j] = __builtin_inf(), state[j] = 0;
    for (int64_t f = 0; f < n_free; ++f) {
        const int64_t root = free_rows[f];
        heap h = {heap_key, heap_col, 0};
        int64_t n_done = 0, end = -1;
        /* state: 1 reached (in the heap), 2 done */
        int64_t row = root;
        double base = 0.0;
        for (;;) {
            const double ur = u[row];
            for (int64_t p = indptr[row]; p < indptr[row + 1]; ++p) {
                const int32_t j = cols[p];
                if (state[j] == 2) continue;
                const double d = base + (w[p] - ur - v[j]);
                if (d < dist[j]) {
                    dist[j] = d, pred_row[j] = row, state[j] = 1;
                    heap_push(&h, d, j);
                }
            }
            int32_t j = -1;
            while (h.size > 0) {
                const int32_t c = h.col[0];
                const double d = h.key[0];
                heap_pop(&h);
                if (state[c] == 2 || d > dist[c]) continue;
                j = c;
                break;
            }
            if (j < 0) {
                for (int64_t t = 0; t < n_done; ++t) dist[done_cols[t]] = __builtin_inf(), state[done_cols[t]] = 0;
                return -1;
            }
            state[j] = 2, done_cols[n_done++] = j;
            if (row_of_col[j] < 0) {
                end = j;
                break;
            }
            row = row_of_col[j];
            base = dist[j];
        }
        const double total = dist[end];
        u[root] += total;
        for (int64_t t = 0; t < n_done; ++t) {
            const int32_t j = done_cols[t];
            const double slack = total - dist[j];
            v[j] -= slack;
            if (j != end) u[row_of_col[j]] += slack;
        }
        for (int64_t j = end;;) { /* augment along the predecessors */
            const int64_t i = pred_row[j], next = col_of_row[i];
            col_of_row[i] = j, row_of_col[j] = i;
            if (i == root) break;
            j = next;
        }
        /* reset what this search touched: done columns, and those still in the heap */
        for (int64_t t = 0; t < n_done; ++t) dist[done_cols[t]] = __builtin_inf(), state[done_cols[t]] = 0;
        for (int64_t t = 0; t < h.size; ++t) dist[h.col[t]] = __builtin_inf(), state[h.col[t]] = 0;
    }
    return 0;
}
