/* WaveNet generation steps in C: the loop of wavenet_fast.IncrementalWaveNet.step_scaled for one stream
 * (wavenet_steps), without ~120 Python-level op dispatches per sample, and for a batch of folds on worker
 * threads (wavenet_fold_steps, below).
 *
 * Built and loaded by studio/engine/models/wavenet_native.py (gcc -O3 -march=native, cached); plain C,
 * no torch headers, all memory owned by torch tensors on the Python side. Layout (float32, row-major,
 * all matrices "in x out"):
 *   meta   int64: L R G S C K, then L dilations, then offsets into w: embed, rot[L], res[L], skip,
 *          post1_w, post1_b, post2_w, post2_b, then offsets into state: ring[L], gate, zs, skip, hidden, logits
 *   rot[i] K rotations of a [K*R, G] gate matrix (sigmoid half pre-halved), res[i] [G/2+1, R] (bias row last,
 *          residual scale folded in), skip [L*(G/2+1), S], post1 [S, S] + [S], post2 [S, C] + [C]
 *   state  rings [d_i, K, R] per layer (zeros at t=0), zs [L, G/2+1] with the last column at 1.
 *   biases [n, L, G] per step (already multiplied by the gate scale), noise [n, C] or NULL (argmax).
 * Results equal the torch path to float32 rounding (summation order differs).
 * The products and activations (gemv_acc, rows_block, tanh_inplace, relu_inplace, argmax) are shared with
 * wavernn_native.c through native_kernels.h.
 */
#include "native_kernels.h"

/* Run n steps from time t0. classes[t0] is the previous sample's class; unless forced, classes[t0+1..]
 * receive the chosen classes. logits_out (or NULL): [n, C] logits of every step. Returns n. */
int64_t wavenet_steps(const int64_t *meta, const float *w, float *state, const float *biases, const float *noise,
                      int64_t *classes, int64_t t0, int64_t n, float *logits_out, int forced) {
    const int64_t L = meta[0], R = meta[1], G = meta[2], S = meta[3], C = meta[4], K = meta[5];
    const int64_t *dil = meta + 6;
    const int64_t *wo = meta + 6 + L; /* embed, rot[L], res[L], skip, p1w, p1b, p2w, p2b */
    const int64_t *so = wo + 2 * L + 6; /* ring[L], gate, zs, skip, hidden, logits */
    const int64_t gh = G / 2, width = gh + 1;
    const float *embed = w + wo[0];
    const float *skip_w = w + wo[1 + 2 * L];
    const float *p1w = w + wo[2 + 2 * L], *p1b = w + wo[3 + 2 * L];
    const float *p2w = w + wo[4 + 2 * L], *p2b = w + wo[5 + 2 * L];
    float *gate = state + so[L], *zs = state + so[L + 1], *skip = state + so[L + 2];
    float *hidden = state + so[L + 3], *logits = state + so[L + 4];

    for (int64_t s = 0; s < n; s++) {
        const int64_t t = t0 + s;
        int64_t d = dil[0];
        float *h = state + so[0] + (t % d) * K * R + ((t / d) % K) * R;
        memcpy(h, embed + classes[t] * R, (size_t)R * sizeof(float));
        for (int64_t i = 0; i < L; i++) {
            d = dil[i];
            const float *slot = state + so[i] + (t % d) * K * R;
            const float *rot = w + wo[1 + i] + ((t / d) % K) * (K * R * G);
            memcpy(gate, biases + (s * L + i) * G, (size_t)G * sizeof(float));
            gemv_acc(slot, K * R, rot, G, gate);
            tanh_inplace(gate, G);
            float *z = zs + i * width;
            for (int64_t j = 0; j < gh; j++) z[j] = gate[j] * (1.0f + gate[gh + j]); /* 2z */
            if (i + 1 < L) {
                const int64_t dn = dil[i + 1];
                float *out = state + so[i + 1] + (t % dn) * K * R + ((t / dn) % K) * R;
                const float rs = 0.70710678118654752f;
                for (int64_t r = 0; r < R; r++) out[r] = rs * h[r];
                gemv_acc(z, width, w + wo[1 + L + i], R, out);
                h = out;
            }
        }
        memset(skip, 0, (size_t)S * sizeof(float));
        gemv_acc(zs, L * width, skip_w, S, skip);
        relu_inplace(skip, S);
        memcpy(hidden, p1b, (size_t)S * sizeof(float));
        gemv_acc(skip, S, p1w, S, hidden);
        relu_inplace(hidden, S);
        memcpy(logits, p2b, (size_t)C * sizeof(float));
        gemv_acc(hidden, S, p2w, C, logits);
        if (logits_out) memcpy(logits_out + s * C, logits, (size_t)C * sizeof(float));
        if (!forced) classes[t + 1] = argmax(logits, noise ? noise + s * C : NULL, C);
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------------
 * Folded generation: B streams (folds) stepped together, their rows shared out among worker threads.
 *
 * Every fold is independent of the others through the whole network, so each thread runs all n steps
 * of its own rows [b0, b1) without waiting for the other threads (one pthread_join per call); within a
 * thread, each weight matrix is read once per step for all of its rows (register-blocked products of
 * up to 8 rows x 32 columns), instead of once per row as a batch-1 loop would.
 *
 * Layout (float32, matrices "in x out" in column panels, see gemm_rows): meta int64: L R G S C K Cc B, then L dilations, then
 * offsets into w: embed, rot[L], res[L], skip, p1w, p1b, p2w, p2b, cond[L] ([Cc, G] per layer, gate
 * scale folded in; unused when Cc = 0), then offsets into state: ring[L] ([d_i, B, K, R]), gate [B, G],
 * zs [B, L*(G/2+1)] (constant-1 column per layer), skip [B, S], hidden [B, S], logits [B, C].
 * base [B, L, G]: per fold and layer the constant gate bias (conv and conditioning biases, speaker
 * term; gate scale folded in). cond [n, B, Cc] per step or NULL. noise [n, B, C] or NULL (argmax).
 * classes: classes[t * B + b] is fold b's input class at ring time t (t0 <= t < t0 + n); unless forced,
 * classes[(t + 1) * B + b] receives the drawn class. logits_out [n, logit_rows, C] of folds
 * b < logit_rows, or NULL.
 * ------------------------------------------------------------------------------------------------- */
#include <pthread.h>

#ifndef PREFETCH_FLOATS
#define PREFETCH_FLOATS 2048 /* how far ahead in a weight panel to prefetch (8 KB; measured best among 0.5-8 K floats) */
#endif

/* Y[rows, N] += X[rows, Kd] @ W[Kd, N]; row strides xs (X) and ys (Y). W is stored in column panels
 * (see fold_panels in wavenet_native.py): columns [n0, n0+32) as one contiguous [Kd, 32] block at W + n0*Kd,
 * then 16-column panels, then the last N % 16 columns as one [Kd, N % 16] block, so each panel is one
 * sequential stream. Panels outermost: a panel stays in L1/L2 while every row block passes over it. */
static void gemm_rows(const float *restrict X, int64_t xs, int64_t rows, int64_t Kd, const float *restrict W,
                      int64_t N, float *restrict Y, int64_t ys) {
    int64_t n0 = 0;
    for (; n0 + 32 <= N; n0 += 32)
        for (int64_t r = 0; r < rows; r += NK_MAX_ROWS) {
            const int64_t m = rows - r < NK_MAX_ROWS ? rows - r : NK_MAX_ROWS;
            NK_ROWS_DISPATCH(m, 2, X + r * xs, xs, Kd, W + n0 * Kd, 32, Y + r * ys + n0, ys, PREFETCH_FLOATS)
        }
    for (; n0 + 16 <= N; n0 += 16)
        for (int64_t r = 0; r < rows; r += NK_MAX_ROWS) {
            const int64_t m = rows - r < NK_MAX_ROWS ? rows - r : NK_MAX_ROWS;
            NK_ROWS_DISPATCH(m, 1, X + r * xs, xs, Kd, W + n0 * Kd, 16, Y + r * ys + n0, ys, PREFETCH_FLOATS)
        }
    if (n0 < N) {
        const int64_t rest = N - n0;
        const float *P = W + n0 * Kd;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < rest; c++) {
                float a = Y[r * ys + n0 + c];
                for (int64_t k = 0; k < Kd; k++) a += X[r * xs + k] * P[k * rest + c];
                Y[r * ys + n0 + c] = a;
            }
    }
}

typedef struct {
    const int64_t *meta;
    const float *w, *base, *cond, *noise;
    float *state, *logits_out;
    int64_t *classes;
    int64_t t0, n, b0, b1, logit_rows;
    int forced;
} fold_job;

static void *fold_rows(void *arg) {
    const fold_job *job = (const fold_job *)arg;
    const int64_t *meta = job->meta;
    const float *w = job->w;
    float *state = job->state;
    const int64_t L = meta[0], R = meta[1], G = meta[2], S = meta[3], C = meta[4], K = meta[5], Cc = meta[6],
                  B = meta[7];
    const int64_t *dil = meta + 8;
    const int64_t *wo = dil + L; /* embed, rot[L], res[L], skip, p1w, p1b, p2w, p2b, cond[L] */
    const int64_t *so = wo + 3 * L + 6; /* ring[L], gate, zs, skip, hidden, logits */
    const int64_t gh = G / 2, width = gh + 1, zw = L * width, KR = K * R;
    const int64_t b0 = job->b0, rows = job->b1 - job->b0;
    const float *embed = w + wo[0];
    const float *skip_w = w + wo[1 + 2 * L];
    const float *p1w = w + wo[2 + 2 * L], *p1b = w + wo[3 + 2 * L];
    const float *p2w = w + wo[4 + 2 * L], *p2b = w + wo[5 + 2 * L];
    float *gate = state + so[L] + b0 * G, *zs = state + so[L + 1] + b0 * zw;
    float *skip = state + so[L + 2] + b0 * S, *hidden = state + so[L + 3] + b0 * S;
    float *logits = state + so[L + 4] + b0 * C;
    const float rs = 0.70710678118654752f;

    for (int64_t s = 0; s < job->n; s++) {
        const int64_t t = job->t0 + s;
        int64_t d = dil[0];
        float *ring = state + so[0] + (t % d) * B * KR;
        int64_t part = ((t / d) % K) * R;
        for (int64_t b = 0; b < rows; b++)
            memcpy(ring + (b0 + b) * KR + part, embed + job->classes[t * B + b0 + b] * R, (size_t)R * sizeof(float));
        for (int64_t i = 0; i < L; i++) {
            d = dil[i];
            const float *slot = state + so[i] + (t % d) * B * KR + b0 * KR;
            const float *h = slot + ((t / d) % K) * R; /* this layer's input rows (stride KR) */
            const float *rot = w + wo[1 + i] + ((t / d) % K) * (KR * G);
            fill_rows(gate, rows, G, job->base + (b0 * L + i) * G, L * G);
            gemm_rows(slot, KR, rows, KR, rot, G, gate, G);
            if (job->cond) gemm_rows(job->cond + (s * B + b0) * Cc, Cc, rows, Cc, w + wo[6 + 2 * L + i], G, gate, G);
            tanh_inplace(gate, rows * G);
            for (int64_t b = 0; b < rows; b++) {
                const float *g = gate + b * G;
                float *z = zs + b * zw + i * width;
                for (int64_t j = 0; j < gh; j++) z[j] = g[j] * (1.0f + g[gh + j]); /* 2z */
            }
            if (i + 1 < L) {
                const int64_t dn = dil[i + 1];
                float *out = state + so[i + 1] + (t % dn) * B * KR + b0 * KR + ((t / dn) % K) * R;
                for (int64_t b = 0; b < rows; b++)
                    for (int64_t r = 0; r < R; r++) out[b * KR + r] = rs * h[b * KR + r];
                gemm_rows(zs + i * width, zw, rows, width, w + wo[1 + L + i], R, out, KR);
            }
        }
        memset(skip, 0, (size_t)(rows * S) * sizeof(float));
        gemm_rows(zs, zw, rows, zw, skip_w, S, skip, S);
        relu_inplace(skip, rows * S);
        fill_rows(hidden, rows, S, p1b, 0);
        gemm_rows(skip, S, rows, S, p1w, S, hidden, S);
        relu_inplace(hidden, rows * S);
        fill_rows(logits, rows, C, p2b, 0);
        gemm_rows(hidden, S, rows, S, p2w, C, logits, C);
        for (int64_t b = 0; b < rows; b++) {
            const float *lg = logits + b * C;
            const int64_t fold = b0 + b;
            if (job->logits_out && fold < job->logit_rows)
                memcpy(job->logits_out + (s * job->logit_rows + fold) * C, lg, (size_t)C * sizeof(float));
            if (!job->forced)
                job->classes[(t + 1) * B + fold] = argmax(lg, job->noise ? job->noise + (s * B + fold) * C : NULL, C);
        }
    }
    return NULL;
}

#define MAX_THREADS 64

/* Run n steps of all B folds from ring time t0 on `threads` threads (the caller's thread included). Returns
 * the threads used. */
int64_t wavenet_fold_steps(const int64_t *meta, const float *w, float *state, const float *base, const float *cond,
                           const float *noise, int64_t *classes, int64_t t0, int64_t n, int64_t threads,
                           float *logits_out, int64_t logit_rows, int forced) {
    const int64_t B = meta[7];
    if (threads > B) threads = B;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    fold_job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int64_t j = 0; j < threads; j++) {
        fold_job job = {meta, w, base, cond, noise, state, logits_out, classes, t0, n,
                        B * j / threads, B * (j + 1) / threads, logit_rows, forced};
        jobs[j] = job;
    }
    for (int64_t j = 1; j < threads; j++) started[j] = pthread_create(&ids[j], NULL, fold_rows, &jobs[j]) == 0;
    fold_rows(&jobs[0]);
    for (int64_t j = 1; j < threads; j++) {
        if (started[j]) pthread_join(ids[j], NULL);
        else fold_rows(&jobs[j]); /* no thread to be had: run its rows here */
    }
    return threads;
}
