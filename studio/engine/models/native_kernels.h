/* Kernels shared by the native step loops (wavenet_native.c, wavernn_native.c): the vector type, the
 * matrix-vector product of one row, the register-blocked product of up to 8 rows, exp / sigmoid / tanh
 * without libm, relu, argmax and row filling.
 *
 * Header only: every function is static, so each step loop gets its own copy, specialised by the compiler
 * where a tuning argument is a compile-time constant (rows_block's rows, columns and prefetch distance).
 * native_build.py compiles with -I this folder and hashes this file's content into the cache key of every
 * source that includes it: an edit here rebuilds both libraries at their next load.
 *
 * Matrices are float32, row-major "in x out" with a row stride given per call; all products accumulate
 * into their output (y += x @ W), so callers first fill the output with a bias or zeros.
 */
#ifndef STUDIO_NATIVE_KERNELS_H
#define STUDIO_NATIVE_KERNELS_H

#include <stdint.h>
#include <string.h>

#define NK_INLINE static inline __attribute__((always_inline))
#define NK_FN static __attribute__((unused))

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4))); /* unaligned loads and stores */

/* x in every lane: x - 0 folds to a plain broadcast (0 + x does not: it would turn -0 into +0) */
NK_INLINE v16 splat(float x) { return x - (v16){0}; }

/* y[16*ch columns] += x[K] @ W[K, those columns] (row stride N): ch accumulators over all of K */
NK_INLINE void gemv_block(const int ch, const float *restrict x, int64_t K, const float *restrict W, int64_t N,
                          float *restrict y) {
    v16 a[8];
    for (int i = 0; i < ch; i++) a[i] = *(const v16u *)(y + 16 * i);
    for (int64_t k = 0; k < K; k++) {
        const float *w = W + k * N;
        const v16 xk = splat(x[k]);
        for (int i = 0; i < ch; i++) a[i] += xk * *(const v16u *)(w + 16 * i);
    }
    for (int i = 0; i < ch; i++) *(v16u *)(y + 16 * i) = a[i];
}

/* y[N] += x[K] @ W[K, N] for one row: blocks of 128 (eight independent FMA chains), 64, then 16 columns
 * held in registers over all of K, then single columns */
NK_FN void gemv_acc(const float *restrict x, int64_t K, const float *restrict W, int64_t N, float *restrict y) {
    int64_t n0 = 0;
    for (; n0 + 128 <= N; n0 += 128) gemv_block(8, x, K, W + n0, N, y + n0);
    for (; n0 + 64 <= N; n0 += 64) gemv_block(4, x, K, W + n0, N, y + n0);
    for (; n0 + 16 <= N; n0 += 16) gemv_block(1, x, K, W + n0, N, y + n0);
    for (; n0 < N; n0++) {
        float a = y[n0];
        for (int64_t k = 0; k < K; k++) a += x[k] * W[k * N + n0];
        y[n0] = a;
    }
}

#define NK_MAX_ROWS 8

/* Y[mr rows, 16*ch columns] += X[mr, Kd] @ W[Kd, those columns] (row strides xs, N, ys): mr*ch accumulators
 * over all of Kd, so each weight load serves mr rows. prefetch > 0: prefetch that many floats ahead in W
 * (a sequential panel, see wavenet_native.c's gemm_rows); 0: none. mr, ch and prefetch should be
 * constants at the call, so that the compiler unrolls and keeps the accumulators in registers. */
NK_INLINE void rows_block(const int mr, const int ch, const float *restrict X, int64_t xs, int64_t Kd,
                          const float *restrict W, int64_t N, float *restrict Y, int64_t ys, const int64_t prefetch) {
    v16 a[NK_MAX_ROWS][2];
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < ch; c++) a[r][c] = *(const v16u *)(Y + r * ys + 16 * c);
    for (int64_t k = 0; k < Kd; k++) {
        if (prefetch)
            for (int c = 0; c < ch; c++) __builtin_prefetch(W + k * N + prefetch + 16 * c);
        v16 w[2];
        for (int c = 0; c < ch; c++) w[c] = *(const v16u *)(W + k * N + 16 * c);
        for (int r = 0; r < mr; r++) {
            const v16 x = splat(X[r * xs + k]);
            for (int c = 0; c < ch; c++) a[r][c] += x * w[c];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < ch; c++) *(v16u *)(Y + r * ys + 16 * c) = a[r][c];
}

/* rows_block for a row count known only at run time (1..8): one constant-row instance per count */
#define NK_ROWS_DISPATCH(rows, ch, X, xs, Kd, W, N, Y, ys, prefetch)           \
    switch (rows) {                                                            \
    case 8: rows_block(8, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    case 7: rows_block(7, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    case 6: rows_block(6, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    case 5: rows_block(5, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    case 4: rows_block(4, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    case 3: rows_block(3, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    case 2: rows_block(2, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;        \
    default: rows_block(1, ch, X, xs, Kd, W, N, Y, ys, prefetch); break;       \
    }

/* Y[b] = src + b * src_stride for B rows of N (src_stride 0: the same row, e.g. a bias, in every row) */
NK_INLINE void fill_rows(float *restrict Y, int64_t B, int64_t N, const float *restrict src, int64_t src_stride) {
    for (int64_t b = 0; b < B; b++) memcpy(Y + b * N, src + b * src_stride, (size_t)N * sizeof(float));
}

/* exp(x) for x <= 0 (x >= -87 after clamping): Cody-Waite reduction, degree-6 Taylor, ~2 ulp */
NK_INLINE float exp_neg(float x) {
    if (x < -87.0f) x = -87.0f;
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float nf = (x * 1.44269504088896341f + shift) - shift;
    float r = x - nf * 0.693145751953125f;
    r = r - nf * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { uint32_t u; float f; } scale;
    scale.u = (uint32_t)((int32_t)nf + 127) << 23;
    return p * scale.f;
}

NK_INLINE float sigmoid_f(float x) {
    const float e = exp_neg(x < 0.0f ? x : -x);
    return x < 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
}

NK_INLINE float tanh_f(float x) {
    const float a = x < 0.0f ? -x : x;
    const float e = exp_neg(-2.0f * a);
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

NK_INLINE void tanh_inplace(float *restrict v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = tanh_f(v[i]);
}

NK_INLINE void relu_inplace(float *restrict v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
}

/* the index of the largest logits[c] + noise[c] over C classes (noise NULL: of logits[c]); the first on ties */
NK_INLINE int64_t argmax(const float *restrict logits, const float *restrict noise, int64_t C) {
    int64_t best = 0;
    if (noise) {
        float top = logits[0] + noise[0];
        for (int64_t c = 1; c < C; c++) {
            const float v = logits[c] + noise[c];
            if (v > top) { top = v; best = c; }
        }
    } else {
        float top = logits[0];
        for (int64_t c = 1; c < C; c++)
            if (logits[c] > top) { top = logits[c]; best = c; }
    }
    return best;
}

#endif /* STUDIO_NATIVE_KERNELS_H */
