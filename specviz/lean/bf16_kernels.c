/* y = x W^T (+ b) for a few rows of bf16 x and a bf16 weight W [N, K], with fp32 accumulation
 * on AVX512-BF16 (specviz.lean.kernel builds and calls it; docs/engine.md).
 *
 * Row-invariant by construction: y[r][o] is computed by one 16-lane fp32 accumulator that
 * starts at zero and takes one _mm512_dpbf16_ps per 32-wide chunk of the input, in increasing
 * order (the last chunk zero-padded); its 16 lanes are summed in one fixed order (halves, then
 * quarters, eighths, the last pair), the bias is added in fp32 and the sum is rounded once to
 * bf16 (round to nearest even). How many rows are computed together only decides which
 * accumulators live side by side in registers; no accumulator ever sees another operation, so a
 * row's bits depend neither on how many rows the call has nor on where the row sits.
 *
 * The weight is packed once (specviz.lean.kernel.pack): blocks of BLOCK outputs, each block
 * its chunks in order, each chunk the BLOCK outputs' 32 weights side by side
 * ([N/BLOCK][K/32][BLOCK][32], zero-padded to whole blocks and chunks), so a call reads the
 * weights as one sequential stream, prefetched into the L2 cache PREFETCH elements ahead
 * (PREFETCH_FEW for a call of up to FEW_ROWS rows, whose loop runs through the stream faster).
 * Prefetching into L1 evicted the rows of x, which every block reads again, once x outgrew what
 * the stream left of L1: 6 rows of SmolLM2's 1536-wide down projection (18 KiB of x) took
 * 4.3 ms a forward against 2.5 at one row; prefetched into L2, 2.5 (CPU time, one thread).
 * Each chunk of weights is loaded once for up to GROUP rows, so a 6-row product reads the
 * weights once, as a one-row product does; more rows than GROUP read a block again from L1.
 *
 * Built with gcc -O3 -mavx512f -mavx512bw -mavx512bf16 -mavx512vl, and no -ffast-math: the
 * compiler must not reassociate the sums.
 */
#include <immintrin.h>
#include <stdint.h>

typedef uint16_t bf16;

#define BLOCK 4 /* outputs per packed block */
#define GROUP 6 /* rows that share one pass over a block: 24 accumulators */
#ifndef PREFETCH
#define PREFETCH 8192 /* elements (16 KiB) ahead of the weights being read, into L2 */
#endif
#ifndef PREFETCH_FEW
#define PREFETCH_FEW 2048 /* the same for a call of up to FEW_ROWS rows (4 KiB) */
#endif
#define FEW_ROWS 2

/* The 4 accumulators' sums, lane o the sum of acc[o]; every sum in reduce16's order:
 * s8[i] = v[i] + v[i+8], s4[i] = s8[i] + s8[i+4], s2[i] = s4[i] + s4[i+2], s = s2[0] + s2[1]. */
static inline __attribute__((always_inline)) __m128 reduce4(__m512 a0, __m512 a1, __m512 a2,
                                                           __m512 a3) {
    /* s8: t01 = [s8(a0) | s8(a1)], t23 = [s8(a2) | s8(a3)] (256-bit halves) */
    __m512 t01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(3, 2, 3, 2)));
    /* s4: 128-bit lane j = s4(a_j) */
    __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(t01, t23, _MM_SHUFFLE(3, 1, 3, 1)));
    /* s2: elements 0, 1 of each 128-bit lane */
    __m512 v = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, _MM_SHUFFLE(3, 2, 3, 2)));
    /* s: element 0 of each 128-bit lane */
    __m512 s = _mm512_add_ps(v, _mm512_shuffle_ps(v, v, _MM_SHUFFLE(1, 1, 1, 1)));
    __m512i gather = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(gather, s));
}

/* fp32 -> bf16, round to nearest even; a NaN stays a (quiet) NaN. */
static inline __attribute__((always_inline)) __m128i round_bf16(__m128 f) {
    __m128i u = _mm_castps_si128(f);
    __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
    __m128i rounded = _mm_srli_epi32(_mm_add_epi32(u, _mm_add_epi32(lsb, _mm_set1_epi32(0x7fff))), 16);
    __mmask8 nan = _mm_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    __m128i quiet = _mm_or_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(0x40));
    __m128i out = _mm_mask_mov_epi32(rounded, nan, quiet);
    return _mm_cvtepi32_epi16(out); /* low 64 bits: 4 bf16 */
}

/* One block of BLOCK outputs (o0..) for R rows of x (row stride K) into y (row stride N). */
#define ROWS(R)                                                                              \
    static void rows_##R(const bf16 *x, int64_t K, const bf16 *wb, const float *bias,        \
                         int64_t o0, int64_t N, bf16 *y, int64_t ahead) {                    \
        __m512 acc[R][BLOCK];                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                  \
            _Pragma("GCC unroll 4") for (int o = 0; o < BLOCK; o++) acc[r][o] =              \
                _mm512_setzero_ps();                                                         \
        int64_t full = K / 32;                                                               \
        for (int64_t c = 0; c < full; c++) {                                                 \
            const bf16 *wc = wb + c * (BLOCK * 32);                                          \
            __m512bh wv[BLOCK];                                                              \
            _Pragma("GCC unroll 4") for (int o = 0; o < BLOCK; o++) {                        \
                _mm_prefetch((const char *)(wc + ahead + 32 * o), _MM_HINT_T1);              \
                wv[o] = (__m512bh)_mm512_loadu_si512(wc + 32 * o);                           \
            }                                                                                \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                            \
                __m512bh xv = (__m512bh)_mm512_loadu_si512(x + r * K + 32 * c);              \
                _Pragma("GCC unroll 4") for (int o = 0; o < BLOCK; o++) acc[r][o] =          \
                    _mm512_dpbf16_ps(acc[r][o], xv, wv[o]);                                  \
            }                                                                                \
        }                                                                                    \
        if (full * 32 < K) { /* the last chunk: x zero-padded by a masked load */            \
            const bf16 *wc = wb + full * (BLOCK * 32);                                       \
            __mmask32 m = (__mmask32)((1ull << (K - 32 * full)) - 1);                        \
            __m512bh wv[BLOCK];                                                              \
            _Pragma("GCC unroll 4") for (int o = 0; o < BLOCK; o++) wv[o] =                  \
                (__m512bh)_mm512_loadu_si512(wc + 32 * o);                                   \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                            \
                __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + r * K + 32 * full);  \
                _Pragma("GCC unroll 4") for (int o = 0; o < BLOCK; o++) acc[r][o] =          \
                    _mm512_dpbf16_ps(acc[r][o], xv, wv[o]);                                  \
            }                                                                                \
        }                                                                                    \
        int64_t left = N - o0;                                                               \
        __mmask8 keep = (__mmask8)(left >= BLOCK ? 0xf : (1u << left) - 1);                  \
        __m128 b = bias ? _mm_maskz_loadu_ps(keep, bias + o0) : _mm_setzero_ps();            \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                \
            __m128 s = reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);                  \
            if (bias) s = _mm_add_ps(s, b);                                                  \
            _mm_mask_storeu_epi16(y + r * N + o0, keep, round_bf16(s));                      \
        }                                                                                    \
    }

ROWS(1)
ROWS(2)
ROWS(3)
ROWS(4)
ROWS(5)
ROWS(6)

typedef void (*rows_fn)(const bf16 *, int64_t, const bf16 *, const float *, int64_t, int64_t,
                        bf16 *, int64_t);
static const rows_fn BY_ROWS[GROUP + 1] = {0, rows_1, rows_2, rows_3, rows_4, rows_5, rows_6};

/* How many rows the group starting with `left` rows to go takes: all of them up to GROUP, else
 * an even split (7 = 4 + 3, 8 = 4 + 4, ...), so no group is left with a single row. */
static int group_of(int64_t left) {
    if (left <= GROUP) return (int)left;
#ifdef GREEDY
    return GROUP;
#endif
    int64_t groups = (left + GROUP - 1) / GROUP;
    return (int)((left + groups - 1) / groups);
}

/* y[rows][N] (bf16) = x[rows][K] W^T + bias (fp32, or NULL), W packed (see the top). */
void specviz_linear_bf16(const bf16 *x, int64_t rows, int64_t K, const bf16 *packed, int64_t N,
                         const float *bias, bf16 *y) {
    int64_t chunks = (K + 31) / 32;
    int64_t ahead = rows <= FEW_ROWS ? PREFETCH_FEW : PREFETCH;
    for (int64_t o0 = 0; o0 < N; o0 += BLOCK) {
        const bf16 *wb = packed + (o0 / BLOCK) * chunks * (BLOCK * 32);
        for (int64_t r = 0; r < rows;) {
            int g = group_of(rows - r);
            BY_ROWS[g](x + r * K, K, wb, bias, o0, N, y + r * N, ahead);
            r += g;
        }
    }
}

/* The packed layout's constants, so the Python side cannot disagree with this file. */
int specviz_block(void) { return BLOCK; }

/* ---- attention of bf16 queries over a float32 KV cache, one row at a time --------------------
 *
 * out[r] = softmax(q[r] K^T * scale) V over the first first_len + r positions of one sequence's
 * cache, every head, in float32, rounded once to bf16: what specviz.lean.model.attend computes
 * for one query row (query head h reads key head h / groups). Each row is computed alone, by the
 * same operations whatever the number of rows: row-invariant by construction. Scores: one
 * fused multiply-add per 16 dimensions in order, then the fixed 16-lane sum; softmax: the
 * maximum, exp(s - max) (exp_ps below, ~1 ulp), their sum in a fixed order, each divided by it;
 * the output: sum over positions in order of p[t] * V[t], 16 dimensions at a time.
 *
 * The queries that read one kv head (every row's heads of its group: 3 per row for SmolLM2) are
 * computed PAIRS at a time, side by side: they share the loads of the keys, and their
 * independent chains of dependent operations overlap in the pipeline, where one query alone
 * waited on each 16-lane sum (SmolLM2, 30 layers after 206 positions, CPU time: 0.56 -> 0.40 ms
 * at one row, 2.80 -> 1.78 at six; scoring four positions at a time through reduce4, the same
 * bits, took six rows to 1.61). Which queries share a set changes no query's operations, so a
 * row's bits are those it gets alone. */
#include <math.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) float reduce16(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
}

/* e^x for x <= 0 (Cephes' expf polynomial: x = n ln2 + r, |r| <= ln2 / 2) */
static inline __attribute__((always_inline)) __m512 exp_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __attribute__((always_inline)) __m512 load_bf16(const bf16 *p, __mmask16 m) {
    __m256i raw = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

static inline __attribute__((always_inline)) void store_bf16(bf16 *p, __m512 f, __mmask16 m) {
    __m512i u = _mm512_castps_si512(f);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet)));
}

#define MAX_DIM 256 /* head sizes up to this (16 vectors of 16) */

#define PAIRS 6 /* queries (a row's heads that read one kv head) scored side by side */

/* Attention of n <= PAIRS queries that read the same kv head: query p (dim floats at
 * q + p * MAX_DIM, zero past dim) over the first len[p] positions of keys/values (row stride
 * dim), into out[p]. Each query is computed by exactly the operations it would get alone (its
 * scores: one multiply, then one fused multiply-add per 16 dimensions in order, the fixed
 * 16-lane sum, times scale; its softmax and weighted sum as below): the queries share only the
 * loads of the keys, so the n independent dependency chains overlap in the pipeline, and a
 * query's bits do not depend on which others are scored beside it. Positions that every query
 * of the set reaches are scored four at a time (heads up to 128 wide): four accumulators, summed
 * by reduce4, which adds in reduce16's order, so a score has the same bits either way. */
static inline __attribute__((always_inline)) void attend_pairs(
    const float *q, const int64_t *len, bf16 *const *out, int n, int64_t dim, const float *keys,
    const float *values, float scale, float *scores, int64_t stride) {
    int64_t vecs = (dim + 15) / 16;
    __mmask16 tail = (__mmask16)((dim % 16) ? ((1u << (dim % 16)) - 1) : 0xffff);
    int64_t most = 0;
    float top[PAIRS];
    for (int p = 0; p < n; p++) {
        most = len[p] > most ? len[p] : most;
        top[p] = -INFINITY;
    }
    int64_t t = 0;
    if (dim <= 128) { /* four positions at a time: their four sums by reduce4, the same bits */
        int64_t least = most;
        for (int p = 0; p < n; p++) least = len[p] < least ? len[p] : least;
        for (; t + 4 <= least; t += 4) {
            const float *k = keys + t * dim;
            __m512 kv[4][8];
            for (int i = 0; i < 4; i++)
                for (int64_t j = 0; j < vecs; j++)
                    kv[i][j] = _mm512_maskz_loadu_ps(j == vecs - 1 ? tail : 0xffff, k + i * dim + 16 * j);
            __m128 sc = _mm_set1_ps(scale);
            for (int p = 0; p < n; p++) {
                const float *qp = q + p * MAX_DIM;
                __m512 q0 = _mm512_loadu_ps(qp);
                __m512 a0 = _mm512_mul_ps(q0, kv[0][0]), a1 = _mm512_mul_ps(q0, kv[1][0]);
                __m512 a2 = _mm512_mul_ps(q0, kv[2][0]), a3 = _mm512_mul_ps(q0, kv[3][0]);
                for (int64_t j = 1; j < vecs; j++) {
                    __m512 qj = _mm512_loadu_ps(qp + 16 * j);
                    a0 = _mm512_fmadd_ps(qj, kv[0][j], a0);
                    a1 = _mm512_fmadd_ps(qj, kv[1][j], a1);
                    a2 = _mm512_fmadd_ps(qj, kv[2][j], a2);
                    a3 = _mm512_fmadd_ps(qj, kv[3][j], a3);
                }
                __m128 s4 = _mm_mul_ps(reduce4(a0, a1, a2, a3), sc);
                _mm_storeu_ps(scores + p * stride + t, s4);
                float s[4];
                _mm_storeu_ps(s, s4);
                for (int i = 0; i < 4; i++) top[p] = s[i] > top[p] ? s[i] : top[p];
            }
        }
    }
    for (; t < most; t++) {
        const float *k = keys + t * dim;
        __m512 kv[MAX_DIM / 16];
        for (int64_t j = 0; j < vecs; j++)
            kv[j] = _mm512_maskz_loadu_ps(j == vecs - 1 ? tail : 0xffff, k + 16 * j);
        for (int p = 0; p < n; p++) {
            if (t >= len[p]) continue;
            const float *qp = q + p * MAX_DIM;
            __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qp), kv[0]);
            for (int64_t j = 1; j < vecs; j++)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qp + 16 * j), kv[j], acc);
            float s = reduce16(acc) * scale;
            scores[p * stride + t] = s;
            top[p] = s > top[p] ? s : top[p];
        }
    }
    for (int p = 0; p < n; p++) {
        float *sp = scores + p * stride;
        int64_t lp = len[p];
        __m512 sum = _mm512_setzero_ps();
        __m512 mx = _mm512_set1_ps(top[p]);
        for (int64_t t = 0; t < lp; t += 16) {
            __mmask16 m = (__mmask16)(lp - t >= 16 ? 0xffff : (1u << (lp - t)) - 1);
            __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sp + t), mx));
            e = _mm512_maskz_mov_ps(m, e);
            _mm512_mask_storeu_ps(sp + t, m, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 total = _mm512_set1_ps(reduce16(sum));
        for (int64_t t = 0; t < lp; t += 16) { /* each e / total, as the scalar division */
            __mmask16 m = (__mmask16)(lp - t >= 16 ? 0xffff : (1u << (lp - t)) - 1);
            _mm512_mask_storeu_ps(sp + t, m, _mm512_div_ps(_mm512_maskz_loadu_ps(m, sp + t), total));
        }
        __m512 o[MAX_DIM / 16];
        for (int64_t j = 0; j < vecs; j++) o[j] = _mm512_setzero_ps();
        for (int64_t t = 0; t < lp; t++) {
            __m512 w = _mm512_set1_ps(sp[t]);
            const float *v = values + t * dim;
            for (int64_t j = 0; j < vecs; j++)
                o[j] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(j == vecs - 1 ? tail : 0xffff, v + 16 * j), o[j]);
        }
        for (int64_t j = 0; j < vecs; j++)
            store_bf16(out[p] + 16 * j, o[j], j == vecs - 1 ? tail : 0xffff);
    }
}

/* attend_pairs with the head size a constant where it is a common one (registers, unrolled
 * loops), else as given: the same operations either way. */
static void attend_pairs_any(const float *q, const int64_t *len, bf16 *const *out, int n,
                             int64_t dim, const float *keys, const float *values, float scale,
                             float *scores, int64_t stride) {
    if (dim == 64)
        attend_pairs(q, len, out, n, 64, keys, values, scale, scores, stride);
    else if (dim == 128)
        attend_pairs(q, len, out, n, 128, keys, values, scale, scores, stride);
    else
        attend_pairs(q, len, out, n, dim, keys, values, scale, scores, stride);
}

/* Rows 0..rows-1 of one sequence: q[h][r] at q + h * q_head + r * q_row (bf16), keys and values
 * [kv_heads][capacity][dim] float32, row r over the first first_len + r positions; out[r][h]
 * at out + r * heads * dim + h * dim. The queries that read one kv head (every row's heads of
 * its group) go PAIRS at a time through attend_pairs. Returns 0, or -1 when dim exceeds
 * MAX_DIM or memory runs out (nothing written then). */
int specviz_attend_bf16(const bf16 *q, int64_t q_head, int64_t q_row, int64_t rows,
                        int64_t heads, int64_t kv_heads, int64_t dim, const float *keys,
                        const float *values, int64_t capacity, int64_t first_len, float scale,
                        bf16 *out) {
    if (dim > MAX_DIM || dim < 1) return -1;
    int64_t stride = first_len + rows + 16;
    float *scores = malloc(sizeof(float) * (size_t)(PAIRS * stride));
    if (!scores) return -1;
    int64_t groups = heads / kv_heads;
    float qf[PAIRS * MAX_DIM];
    int64_t len[PAIRS];
    bf16 *dest[PAIRS];
    for (int64_t kvh = 0; kvh < kv_heads; kvh++) {
        int n = 0;
        for (int64_t i = 0; i < rows * groups; i++) {
            int64_t r = i / groups, h = kvh * groups + i % groups;
            const bf16 *qh = q + h * q_head + r * q_row;
            for (int64_t j = 0; j < MAX_DIM; j += 16) {
                __mmask16 m = (__mmask16)(j >= dim ? 0 : dim - j >= 16 ? 0xffff : (1u << (dim - j)) - 1);
                _mm512_storeu_ps(qf + n * MAX_DIM + j, load_bf16(qh + j, m));
                if (j + 16 >= dim) break;
            }
            len[n] = first_len + r;
            dest[n] = out + r * heads * dim + h * dim;
            if (++n == PAIRS || i == rows * groups - 1) {
                attend_pairs_any(qf, len, dest, n, dim, keys + kvh * capacity * dim,
                                 values + kvh * capacity * dim, scale, scores, stride);
                n = 0;
            }
        }
    }
    free(scores);
    return 0;
}

/* ---- RMSNorm of bf16 rows, as transformers' LlamaRMSNorm computes it -------------------------
 *
 * out[r] = weight * bf16(x[r] / sqrt(mean(x[r]^2) + eps)): the row in float32, its squares
 * summed 16 lanes at a time in order then by the fixed 16-lane sum, divided by n, the scale
 * 1 / sqrtf(mean + eps); the normalised row rounded to bf16, then multiplied by the bf16 weight
 * in float32 and rounded again (a bf16 product, as torch computes one). One row at a time:
 * row-invariant by construction. */
void specviz_rms_norm_bf16(const bf16 *x, int64_t rows, int64_t n, const bf16 *weight, float eps,
                           bf16 *out) {
    for (int64_t r = 0; r < rows; r++) {
        const bf16 *xr = x + r * n;
        __m512 sq = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 m = (__mmask16)(n - j >= 16 ? 0xffff : (1u << (n - j)) - 1);
            __m512 v = load_bf16(xr + j, m);
            sq = _mm512_fmadd_ps(v, v, sq);
        }
        float mean = reduce16(sq) / (float)n;
        __m512 scale = _mm512_set1_ps(1.0f / sqrtf(mean + eps));
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 m = (__mmask16)(n - j >= 16 ? 0xffff : (1u << (n - j)) - 1);
            __m512 normed = _mm512_mul_ps(load_bf16(xr + j, m), scale);
            store_bf16(out + r * n + j, normed, m); /* rounded to bf16 ... */
            __m512 back = load_bf16(out + r * n + j, m);
            store_bf16(out + r * n + j, _mm512_mul_ps(back, load_bf16(weight + j, m)), m);
        }
    }
}

/* ---- RoPE of a pass's queries and keys, keys and values written to a sequence's cache ---------
 *
 * For rows 0..rows-1 of qkv (bf16, row stride ld: heads query heads, then kv_heads key heads,
 * then kv_heads value heads, dim each): every query and key head rotated as transformers does it
 * in bf16, x * cos + rotate_half(x) * sin with each product and the sum rounded to bf16 (torch's
 * bf16 arithmetic); queries to q_out[h][r] (q_out + h * q_head + r * dim), rotated keys and the
 * values to the float32 cache [kv_heads][capacity][dim] at positions start + r. One element at a
 * time: row-invariant by construction. */
static inline float from_bf16(bf16 b) {
    union { uint32_t u; float f; } v = { (uint32_t)b << 16 };
    return v.f;
}

static inline bf16 to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (bf16)((v.u >> 16) | 0x40u);
    return (bf16)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

static inline float rotated(const bf16 *x, int64_t d, int64_t dim, float c, float s) {
    int64_t half = dim / 2;
    float partner = d < half ? -from_bf16(x[d + half]) : from_bf16(x[d - half]);
    float a = from_bf16(to_bf16(from_bf16(x[d]) * c));
    float b = from_bf16(to_bf16(partner * s));
    return from_bf16(to_bf16(a + b));
}

void specviz_rope_bf16(const bf16 *qkv, int64_t ld, int64_t rows, int64_t heads, int64_t kv_heads,
                       int64_t dim, const bf16 *cos, const bf16 *sin, bf16 *q_out, int64_t q_head,
                       float *keys, float *values, int64_t capacity, int64_t start) {
    for (int64_t r = 0; r < rows; r++) {
        const bf16 *row = qkv + r * ld;
        const bf16 *cr = cos + r * dim, *sr = sin + r * dim;
        for (int64_t h = 0; h < heads; h++)
            for (int64_t d = 0; d < dim; d++)
                q_out[h * q_head + r * dim + d] =
                    to_bf16(rotated(row + h * dim, d, dim, from_bf16(cr[d]), from_bf16(sr[d])));
        for (int64_t h = 0; h < kv_heads; h++) {
            const bf16 *k = row + (heads + h) * dim, *v = row + (heads + kv_heads + h) * dim;
            float *kc = keys + (h * capacity + start + r) * dim;
            float *vc = values + (h * capacity + start + r) * dim;
            for (int64_t d = 0; d < dim; d++) {
                kc[d] = rotated(k, d, dim, from_bf16(cr[d]), from_bf16(sr[d]));
                vc[d] = from_bf16(v[d]);
            }
        }
    }
}
