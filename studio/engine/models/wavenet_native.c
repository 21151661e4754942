/* One-stream WaveNet generation steps in C: the loop of wavenet_fast.IncrementalWaveNet.step_scaled
 * for batch 1, without ~120 Python-level op dispatches per sample.
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
 */
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4))); /* unaligned loads and stores */

/* y[N] += x[K] @ W[K, N]: blocks of 64 then 16 output columns held in vector registers over all of K */
static void gemv_acc(const float *restrict x, int64_t K, const float *restrict W, int64_t N, float *restrict y) {
    int64_t n0 = 0;
    for (; n0 + 64 <= N; n0 += 64) {
        v16 a0 = *(const v16u *)(y + n0), a1 = *(const v16u *)(y + n0 + 16);
        v16 a2 = *(const v16u *)(y + n0 + 32), a3 = *(const v16u *)(y + n0 + 48);
        for (int64_t k = 0; k < K; k++) {
            const float *w = W + k * N + n0;
            const v16 xk = (v16){0} + x[k];
            a0 += xk * *(const v16u *)(w);
            a1 += xk * *(const v16u *)(w + 16);
            a2 += xk * *(const v16u *)(w + 32);
            a3 += xk * *(const v16u *)(w + 48);
        }
        *(v16u *)(y + n0) = a0;
        *(v16u *)(y + n0 + 16) = a1;
        *(v16u *)(y + n0 + 32) = a2;
        *(v16u *)(y + n0 + 48) = a3;
    }
    for (; n0 + 16 <= N; n0 += 16) {
        v16 a = *(const v16u *)(y + n0);
        for (int64_t k = 0; k < K; k++) a += ((v16){0} + x[k]) * *(const v16u *)(W + k * N + n0);
        *(v16u *)(y + n0) = a;
    }
    for (; n0 < N; n0++) {
        float a = y[n0];
        for (int64_t k = 0; k < K; k++) a += x[k] * W[k * N + n0];
        y[n0] = a;
    }
}

/* exp(x) for x <= 0 (x >= -87 after clamping): Cody-Waite reduction, degree-6 Taylor, ~2 ulp */
static inline float exp_neg(float x) {
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

static void tanh_inplace(float *restrict v, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = v[i];
        const float a = x < 0.0f ? -x : x;
        const float e = exp_neg(-2.0f * a);
        const float t = (1.0f - e) / (1.0f + e);
        v[i] = x < 0.0f ? -t : t;
    }
}

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
        for (int64_t j = 0; j < S; j++) skip[j] = skip[j] > 0.0f ? skip[j] : 0.0f;
        memcpy(hidden, p1b, (size_t)S * sizeof(float));
        gemv_acc(skip, S, p1w, S, hidden);
        for (int64_t j = 0; j < S; j++) hidden[j] = hidden[j] > 0.0f ? hidden[j] : 0.0f;
        memcpy(logits, p2b, (size_t)C * sizeof(float));
        gemv_acc(hidden, S, p2w, C, logits);
        if (logits_out) memcpy(logits_out + s * C, logits, (size_t)C * sizeof(float));
        if (!forced) {
            const float *e = noise ? noise + s * C : NULL;
            int64_t best = 0;
            float top = e ? logits[0] + e[0] : logits[0];
            for (int64_t c = 1; c < C; c++) {
                const float v = e ? logits[c] + e[c] : logits[c];
                if (v > top) { top = v; best = c; }
            }
            classes[t + 1] = best;
        }
    }
    return n;
}
