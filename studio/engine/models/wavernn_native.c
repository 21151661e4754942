/* WaveRNN generation steps in C: the per-step loop of wavernn_step.MulawStepper / DualStepper (GRU cells,
 * FC head, inverse-CDF sampling) for B streams, without ~30-60 torch op dispatches per step.
 *
 * Built and loaded by studio/engine/models/wavernn_native.py (cc -O3 -march=native, cached); plain C, no
 * torch headers, all memory owned by torch tensors on the Python side. Everything float32, matrices
 * row-major "in x out". The conditioning's share of every layer is projected by torch per chunk of steps
 * and handed in as five time-major arrays proj[i] = [n, B, d_i].
 *
 * meta int64: mode (0 mu-law, 1 dual), B, R (GRU width; dual: the whole state H), F (fc width), K (classes
 *     per softmax), then offsets into w (see below), then offsets into state.
 * mu-law w: i_x[R] g1_x[3R] hh1[R,3R] bhh1[3R] hh2[R,3R] bhh2[3R] w2x[R,3R] wf1x[R,F] wf2x[F,F] fc3[F,K]
 *     bfc3[K] table[K];  proj: icond[R] g1[3R] g2[3R] f1[F] f2[F]
 *     state: h1[B,R] h2[B,R] x[B]; scratch gh1[B,3R] gh2[B,3R] gi[B,3R] x1[B,R] y[B,F] y2[B,F] logits[B,K]
 * dual w (gate rows [r_c z_c n_c | r_f z_f n_f], half = H/2): w_prev[2,3H] w_cur[3H/2] hh[H,3H] bhh[3H]
 *     cw1[half,F] fw1[half,F] cw2[F,F] fw2[F,F] cfc3[F,K] cb3[K] ffc3[F,K] fb3[K] table[K];
 *     proj: gi[3H] cf1[F] ff1[F] cf2[F] ff2[F]
 *     state: h[B,H] prev[B,2]; scratch gh[B,3H] gi[B,3H] hn[B,H] y[B,F] y2[B,F] logits[B,K]
 * LPC (mode 2; meta: mode B R F K O, then 14 weight and 12 state offsets) w: i_x[3,R] g1_x[3,3R] hh1[R,3R]
 *     bhh1[3R] hh2[R,3R] bhh2[3R] w2x[R,3R] wf1x[R,F] wf2x[F,F] fc3[F,K] bfc3[K] table[K] decode[K]
 *     consts[mu, 1/ln(1+mu)];  proj: as mu-law, plus lpc[O] (the step's predictor coefficients)
 *     state: h1[B,R] h2[B,R] hist[B,O] (s_{t-1} first) e_in[B]; scratch as mu-law. Instead of classes it
 *     writes the pre-emphasised signal s_t = clamp(p_t + decode[q], -1, 1) as float [B, stride].
 * uniforms [n, B, D] (D = 1 mu-law, 2 dual), classes int64 [B, stride] (step t of stream b at
 * b * stride + t; dual: coarse * 256 + fine). forced: read the classes instead of drawing them.
 * logits_out (or NULL): [n, D, B, K].
 * Results equal the torch stepper to float32 rounding (summation order and exp differ); the drawn classes
 * are the same except where a uniform falls within rounding of a CDF step.
 */
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4))); /* unaligned loads and stores */

/* y[N] += x[K] @ W[K, N] for one row: blocks of 64 then 16 columns held in registers over all of K */
static void gemv_acc(const float *restrict x, int64_t K, const float *restrict W, int64_t N, float *restrict y) {
    int64_t n0 = 0;
    for (; n0 + 128 <= N; n0 += 128) { /* eight independent chains: FMA latency hidden */
        v16 a[8];
        for (int i = 0; i < 8; i++) a[i] = *(const v16u *)(y + n0 + 16 * i);
        for (int64_t k = 0; k < K; k++) {
            const float *w = W + k * N + n0;
            const v16 xk = (v16){0} + x[k];
            for (int i = 0; i < 8; i++) a[i] += xk * *(const v16u *)(w + 16 * i);
        }
        for (int i = 0; i < 8; i++) *(v16u *)(y + n0 + 16 * i) = a[i];
    }
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

/* Y[8 rows, 32-column blocks of N] += X[8 rows] @ W: sixteen accumulators, each weight load used 8 times */
static void gemm8_acc(const float *restrict X, int64_t xs, int64_t K, const float *restrict W, int64_t N,
                      float *restrict Y, int64_t ys, int64_t n_end) {
    for (int64_t n0 = 0; n0 + 32 <= n_end; n0 += 32) {
        v16 a[8][2];
        for (int r = 0; r < 8; r++) {
            a[r][0] = *(v16u *)(Y + r * ys + n0);
            a[r][1] = *(v16u *)(Y + r * ys + n0 + 16);
        }
        for (int64_t k = 0; k < K; k++) {
            const v16 w0 = *(const v16u *)(W + k * N + n0), w1 = *(const v16u *)(W + k * N + n0 + 16);
            for (int r = 0; r < 8; r++) {
                const v16 xb = (v16){0} + X[r * xs + k];
                a[r][0] += xb * w0;
                a[r][1] += xb * w1;
            }
        }
        for (int r = 0; r < 8; r++) {
            *(v16u *)(Y + r * ys + n0) = a[r][0];
            *(v16u *)(Y + r * ys + n0 + 16) = a[r][1];
        }
    }
}

/* Y[B, N] += X[B, K] @ W[K, N] (row strides xs, ys): eight (then four) rows share each weight load, so a
 * batch reads the weights about B / 8 times instead of B times; the remaining rows go one at a time. */
static void gemm_acc(const float *restrict X, int64_t xs, int64_t B, int64_t K, const float *restrict W, int64_t N,
                     float *restrict Y, int64_t ys) {
    int64_t b0 = 0;
    const int64_t n32 = N - N % 32;
    for (; n32 > 0 && b0 + 8 <= B; b0 += 8) {
        gemm8_acc(X + b0 * xs, xs, K, W, N, Y + b0 * ys, ys, n32);
        if (n32 < N) /* the last N % 32 columns, row by row */
            for (int64_t r = 0; r < 8; r++)
                for (int64_t n = n32; n < N; n++) {
                    float acc = Y[(b0 + r) * ys + n];
                    for (int64_t k = 0; k < K; k++) acc += X[(b0 + r) * xs + k] * W[k * N + n];
                    Y[(b0 + r) * ys + n] = acc;
                }
    }
    for (; b0 + 4 <= B; b0 += 4) {
        const float *x0 = X + b0 * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
        float *y0 = Y + b0 * ys, *y1 = y0 + ys, *y2 = y1 + ys, *y3 = y2 + ys;
        int64_t n0 = 0;
        for (; n0 + 32 <= N; n0 += 32) {
            v16 a00 = *(v16u *)(y0 + n0), a01 = *(v16u *)(y0 + n0 + 16);
            v16 a10 = *(v16u *)(y1 + n0), a11 = *(v16u *)(y1 + n0 + 16);
            v16 a20 = *(v16u *)(y2 + n0), a21 = *(v16u *)(y2 + n0 + 16);
            v16 a30 = *(v16u *)(y3 + n0), a31 = *(v16u *)(y3 + n0 + 16);
            for (int64_t k = 0; k < K; k++) {
                const v16 w0 = *(const v16u *)(W + k * N + n0), w1 = *(const v16u *)(W + k * N + n0 + 16);
                const v16 b0v = (v16){0} + x0[k], b1v = (v16){0} + x1[k];
                const v16 b2v = (v16){0} + x2[k], b3v = (v16){0} + x3[k];
                a00 += b0v * w0; a01 += b0v * w1;
                a10 += b1v * w0; a11 += b1v * w1;
                a20 += b2v * w0; a21 += b2v * w1;
                a30 += b3v * w0; a31 += b3v * w1;
            }
            *(v16u *)(y0 + n0) = a00; *(v16u *)(y0 + n0 + 16) = a01;
            *(v16u *)(y1 + n0) = a10; *(v16u *)(y1 + n0 + 16) = a11;
            *(v16u *)(y2 + n0) = a20; *(v16u *)(y2 + n0 + 16) = a21;
            *(v16u *)(y3 + n0) = a30; *(v16u *)(y3 + n0 + 16) = a31;
        }
        for (; n0 < N; n0++) {
            float s0 = y0[n0], s1 = y1[n0], s2 = y2[n0], s3 = y3[n0];
            for (int64_t k = 0; k < K; k++) {
                const float wk = W[k * N + n0];
                s0 += x0[k] * wk; s1 += x1[k] * wk; s2 += x2[k] * wk; s3 += x3[k] * wk;
            }
            y0[n0] = s0; y1[n0] = s1; y2[n0] = s2; y3[n0] = s3;
        }
    }
    for (; b0 < B; b0++) gemv_acc(X + b0 * xs, K, W, N, Y + b0 * ys);
}

/* Y[b] = bias (or the row b of a [B, N] array when rows != 0) for B rows of N */
static void fill_rows(float *restrict Y, int64_t B, int64_t N, const float *restrict src, int rows) {
    for (int64_t b = 0; b < B; b++) memcpy(Y + b * N, rows ? src + b * N : src, (size_t)N * sizeof(float));
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

static inline float sigmoidf_(float x) {
    const float e = exp_neg(x < 0.0f ? x : -x);
    return x < 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
}

static inline float tanhf_(float x) {
    const float a = x < 0.0f ? -x : x;
    const float e = exp_neg(-2.0f * a);
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

/* One GRU update in place: h[S] <- lerp(n, h, z) with r, z = sigmoid(gi + gh), n = tanh(gi_n + r * gh_n);
 * gi, gh [3S] in gate order r, z, n (gh includes the hidden bias, as torch's GRU). */
static void gru(const float *restrict gi, const float *restrict gh, float *restrict h, int64_t S) {
    for (int64_t j = 0; j < S; j++) {
        const float r = sigmoidf_(gi[j] + gh[j]);
        const float z = sigmoidf_(gi[S + j] + gh[S + j]);
        const float n = tanhf_(gi[2 * S + j] + r * gh[2 * S + j]);
        h[j] = n + z * (h[j] - n);
    }
}

static inline void relu(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
}

/* The class drawn from logits[K]: argmax when inv_temp == 0, else torch's
 * searchsorted(cdf, u * cdf[-1], right=True) with cdf = cumsum(softmax(logits * inv_temp)), computed the
 * way torch's CPU kernels do (probabilities normalised in float, the running sum kept in double and
 * rounded to float per class), so that only the exp and the logits' own rounding differ. */
static int64_t draw(const float *restrict logits, int64_t K, float inv_temp, float u, float *restrict work) {
    if (inv_temp == 0.0f) {
        int64_t best = 0;
        float top = logits[0];
        for (int64_t c = 1; c < K; c++)
            if (logits[c] > top) { top = logits[c]; best = c; }
        return best;
    }
    float top = logits[0] * inv_temp;
    for (int64_t c = 1; c < K; c++) {
        const float v = logits[c] * inv_temp;
        top = v > top ? v : top;
    }
    double sum = 0.0;
    for (int64_t c = 0; c < K; c++) {
        work[c] = exp_neg(logits[c] * inv_temp - top);
        sum += work[c];
    }
    const float inv_sum = 1.0f / (float)sum;
    double run = 0.0;
    for (int64_t c = 0; c < K; c++) {
        run += (double)(work[c] * inv_sum);
        work[c] = (float)run;
    }
    const float target = u * work[K - 1];
    for (int64_t c = 0; c < K; c++)
        if (work[c] > target) return c;
    return K - 1;
}

/* ln(1 + x) for x >= 0 in double (no libm): split 1 + x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
 * ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172, by its odd series (error < 1e-15). */
static double log1p_pos(double x) {
    union { double d; uint64_t u; } v;
    v.d = 1.0 + x;
    int64_t e = (int64_t)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL; /* m in [1, 2) */
    double m = v.d;
    if (m > 1.4142135623730951) { m *= 0.5; e += 1; }
    const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double series = 1.0 / 21.0;
    for (int k = 19; k >= 1; k -= 2) series = series * t2 + 1.0 / k;
    return (double)e * 0.6931471805599453 + 2.0 * t * series;
}

/* the mu-law compander without quantisation: sign(v) ln(1 + mu |v|) / ln(1 + mu) */
static inline float compand(float v, float mu, float inv_log) {
    const float a = v < 0.0f ? -v : v;
    const float c = (float)log1p_pos((double)(a * mu)) * inv_log;
    return v < 0.0f ? -c : c;
}

#define P(i) ((const float *)(intptr_t)proj[i])

static void mulaw_steps(const int64_t *meta, const float *w, float *st, const int64_t *proj, const float *uniforms,
                        float inv_temp, int64_t *classes, int64_t stride, int64_t t0, int64_t n, float *logits_out,
                        int forced) {
    const int64_t B = meta[1], R = meta[2], F = meta[3], K = meta[4];
    const int64_t *wo = meta + 5, *so = wo + 12;
    const float *i_x = w + wo[0], *g1_x = w + wo[1], *hh1 = w + wo[2], *bhh1 = w + wo[3];
    const float *hh2 = w + wo[4], *bhh2 = w + wo[5], *w2x = w + wo[6], *wf1x = w + wo[7], *wf2x = w + wo[8];
    const float *fc3 = w + wo[9], *bfc3 = w + wo[10], *table = w + wo[11];
    float *h1 = st + so[0], *h2 = st + so[1], *x = st + so[2], *gh1 = st + so[3], *gh2 = st + so[4];
    float *gi = st + so[5], *x1 = st + so[6], *y = st + so[7], *y2 = st + so[8], *logits = st + so[9];
    float *work = st + so[10];
    const int64_t G = 3 * R;
    for (int64_t s = 0; s < n; s++) {
        const int64_t t = t0 + s;
        const float *icond = P(0) + s * B * R, *pg1 = P(1) + s * B * G, *pg2 = P(2) + s * B * G;
        const float *pf1 = P(3) + s * B * F, *pf2 = P(4) + s * B * F;
        fill_rows(gh1, B, G, bhh1, 0);
        gemm_acc(h1, R, B, R, hh1, G, gh1, G);
        fill_rows(gh2, B, G, bhh2, 0);
        gemm_acc(h2, R, B, R, hh2, G, gh2, G);
        for (int64_t b = 0; b < B; b++) {
            const float xb = x[b];
            float *g = gi + b * G;
            const float *pg = pg1 + b * G;
            for (int64_t j = 0; j < G; j++) g[j] = pg[j] + xb * g1_x[j];
            float *hb = h1 + b * R, *xo = x1 + b * R;
            gru(g, gh1 + b * G, hb, R);
            const float *ic = icond + b * R;
            for (int64_t j = 0; j < R; j++) xo[j] = hb[j] + (ic[j] + xb * i_x[j]);
        }
        fill_rows(gi, B, G, pg2, 1);
        gemm_acc(x1, R, B, R, w2x, G, gi, G);
        for (int64_t b = 0; b < B; b++) {
            float *hb = h2 + b * R, *xo = x1 + b * R;
            gru(gi + b * G, gh2 + b * G, hb, R);
            for (int64_t j = 0; j < R; j++) xo[j] = hb[j] + xo[j];
        }
        fill_rows(y, B, F, pf1, 1);
        gemm_acc(x1, R, B, R, wf1x, F, y, F);
        relu(y, B * F);
        fill_rows(y2, B, F, pf2, 1);
        gemm_acc(y, F, B, F, wf2x, F, y2, F);
        relu(y2, B * F);
        fill_rows(logits, B, K, bfc3, 0);
        gemm_acc(y2, F, B, F, fc3, K, logits, K);
        if (logits_out) memcpy(logits_out + s * B * K, logits, (size_t)(B * K) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            int64_t q;
            if (forced) q = classes[b * stride + t];
            else {
                q = draw(logits + b * K, K, inv_temp, uniforms ? uniforms[s * B + b] : 0.0f, work);
                classes[b * stride + t] = q;
            }
            x[b] = table[q];
        }
    }
}

static void dual_steps(const int64_t *meta, const float *w, float *st, const int64_t *proj, const float *uniforms,
                       float inv_temp, int64_t *classes, int64_t stride, int64_t t0, int64_t n, float *logits_out,
                       int forced) {
    const int64_t B = meta[1], H = meta[2], F = meta[3], K = meta[4];
    const int64_t *wo = meta + 5, *so = wo + 13;
    const float *w_prev = w + wo[0], *w_cur = w + wo[1], *hh = w + wo[2], *bhh = w + wo[3];
    const float *cw1 = w + wo[4], *fw1 = w + wo[5], *cw2 = w + wo[6], *fw2 = w + wo[7];
    const float *cfc3 = w + wo[8], *cb3 = w + wo[9], *ffc3 = w + wo[10], *fb3 = w + wo[11], *table = w + wo[12];
    float *h = st + so[0], *prev = st + so[1], *gh = st + so[2], *gi = st + so[3], *hn = st + so[4];
    float *y = st + so[5], *y2 = st + so[6], *logits = st + so[7], *work = st + so[8];
    const int64_t half = H / 2, G = 3 * H, g = 3 * half;
    for (int64_t s = 0; s < n; s++) {
        const int64_t t = t0 + s;
        const float *pgi = P(0) + s * B * G, *pcf1 = P(1) + s * B * F, *pff1 = P(2) + s * B * F;
        const float *pcf2 = P(3) + s * B * F, *pff2 = P(4) + s * B * F;
        int64_t coarse[B > 0 ? B : 1];
        fill_rows(gh, B, G, bhh, 0);
        gemm_acc(h, H, B, H, hh, G, gh, G);
        for (int64_t b = 0; b < B; b++) {
            const float pc = prev[2 * b], pf = prev[2 * b + 1];
            float *gb = gi + b * G;
            const float *pb = pgi + b * G;
            for (int64_t j = 0; j < G; j++) gb[j] = pb[j] + (pc * w_prev[j] + pf * w_prev[G + j]);
            float *hb = hn + b * H;
            memcpy(hb, h + b * H, (size_t)H * sizeof(float));
            gru(gb, gh + b * G, hb, half); /* coarse half: blind to the current coarse value */
        }
        /* coarse head on h_coarse = hn[:, :half] */
        fill_rows(y, B, F, pcf1, 1);
        gemm_acc(hn, H, B, half, cw1, F, y, F);
        relu(y, B * F);
        fill_rows(y2, B, F, pcf2, 1);
        gemm_acc(y, F, B, F, cw2, F, y2, F);
        relu(y2, B * F);
        fill_rows(logits, B, K, cb3, 0);
        gemm_acc(y2, F, B, F, cfc3, K, logits, K);
        if (logits_out) memcpy(logits_out + (2 * s) * B * K, logits, (size_t)(B * K) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            int64_t c;
            if (forced) c = classes[b * stride + t] / 256;
            else c = draw(logits + b * K, K, inv_temp, uniforms ? uniforms[(s * B + b) * 2] : 0.0f, work);
            coarse[b] = c;
            const float c_in = table[c];
            float *gb = gi + b * G + g;
            for (int64_t j = 0; j < g; j++) gb[j] = gb[j] + c_in * w_cur[j];
            gru(gb, gh + b * G + g, hn + b * H + half, half); /* fine half, seeing the chosen coarse value */
            prev[2 * b] = c_in;
        }
        /* fine head on h_fine = hn[:, half:] */
        fill_rows(y, B, F, pff1, 1);
        gemm_acc(hn + half, H, B, half, fw1, F, y, F);
        relu(y, B * F);
        fill_rows(y2, B, F, pff2, 1);
        gemm_acc(y, F, B, F, fw2, F, y2, F);
        relu(y2, B * F);
        fill_rows(logits, B, K, fb3, 0);
        gemm_acc(y2, F, B, F, ffc3, K, logits, K);
        if (logits_out) memcpy(logits_out + (2 * s + 1) * B * K, logits, (size_t)(B * K) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            int64_t f;
            if (forced) f = classes[b * stride + t] % 256;
            else {
                f = draw(logits + b * K, K, inv_temp, uniforms ? uniforms[(s * B + b) * 2 + 1] : 0.0f, work);
                classes[b * stride + t] = coarse[b] * 256 + f;
            }
            prev[2 * b + 1] = table[f];
        }
        memcpy(h, hn, (size_t)(B * H) * sizeof(float));
    }
}

static void lpc_steps(const int64_t *meta, const float *w, float *st, const int64_t *proj, const float *uniforms,
                      float inv_temp, float *signal, int64_t stride, int64_t t0, int64_t n, float *logits_out) {
    const int64_t B = meta[1], R = meta[2], F = meta[3], K = meta[4], O = meta[5];
    const int64_t *wo = meta + 6, *so = wo + 14;
    const float *i_x = w + wo[0], *g1_x = w + wo[1], *hh1 = w + wo[2], *bhh1 = w + wo[3];
    const float *hh2 = w + wo[4], *bhh2 = w + wo[5], *w2x = w + wo[6], *wf1x = w + wo[7], *wf2x = w + wo[8];
    const float *fc3 = w + wo[9], *bfc3 = w + wo[10], *table = w + wo[11], *decode = w + wo[12];
    const float mu = w[wo[13]], inv_log = w[wo[13] + 1];
    float *h1 = st + so[0], *h2 = st + so[1], *hist = st + so[2], *e_in = st + so[3], *gh1 = st + so[4];
    float *gh2 = st + so[5], *gi = st + so[6], *x1 = st + so[7], *y = st + so[8], *y2 = st + so[9];
    float *logits = st + so[10], *work = st + so[11];
    const int64_t G = 3 * R;
    for (int64_t s = 0; s < n; s++) {
        const int64_t t = t0 + s;
        const float *icond = P(0) + s * B * R, *pg1 = P(1) + s * B * G, *pg2 = P(2) + s * B * G;
        const float *pf1 = P(3) + s * B * F, *pf2 = P(4) + s * B * F, *plpc = P(5) + s * B * O;
        float pred[B > 0 ? B : 1];
        fill_rows(gh1, B, G, bhh1, 0);
        gemm_acc(h1, R, B, R, hh1, G, gh1, G);
        fill_rows(gh2, B, G, bhh2, 0);
        gemm_acc(h2, R, B, R, hh2, G, gh2, G);
        for (int64_t b = 0; b < B; b++) {
            const float *hb_hist = hist + b * O, *c = plpc + b * O;
            float p = 0.0f;
            for (int64_t k = 0; k < O; k++) p += hb_hist[k] * c[k];
            pred[b] = p;
            const float x0 = compand(hb_hist[0], mu, inv_log), xp = compand(p, mu, inv_log), xe = e_in[b];
            float *g = gi + b * G;
            const float *pg = pg1 + b * G;
            for (int64_t j = 0; j < G; j++) g[j] = pg[j] + (x0 * g1_x[j] + xp * g1_x[G + j] + xe * g1_x[2 * G + j]);
            float *hb = h1 + b * R, *xo = x1 + b * R;
            gru(g, gh1 + b * G, hb, R);
            const float *ic = icond + b * R;
            for (int64_t j = 0; j < R; j++) xo[j] = hb[j] + (ic[j] + (x0 * i_x[j] + xp * i_x[R + j] + xe * i_x[2 * R + j]));
        }
        fill_rows(gi, B, G, pg2, 1);
        gemm_acc(x1, R, B, R, w2x, G, gi, G);
        for (int64_t b = 0; b < B; b++) {
            float *hb = h2 + b * R, *xo = x1 + b * R;
            gru(gi + b * G, gh2 + b * G, hb, R);
            for (int64_t j = 0; j < R; j++) xo[j] = hb[j] + xo[j];
        }
        fill_rows(y, B, F, pf1, 1);
        gemm_acc(x1, R, B, R, wf1x, F, y, F);
        relu(y, B * F);
        fill_rows(y2, B, F, pf2, 1);
        gemm_acc(y, F, B, F, wf2x, F, y2, F);
        relu(y2, B * F);
        fill_rows(logits, B, K, bfc3, 0);
        gemm_acc(y2, F, B, F, fc3, K, logits, K);
        if (logits_out) memcpy(logits_out + s * B * K, logits, (size_t)(B * K) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            const int64_t q = draw(logits + b * K, K, inv_temp, uniforms ? uniforms[s * B + b] : 0.0f, work);
            float v = pred[b] + decode[q];
            v = v > 1.0f ? 1.0f : (v < -1.0f ? -1.0f : v);
            signal[b * stride + t] = v;
            float *hb_hist = hist + b * O;
            memmove(hb_hist + 1, hb_hist, (size_t)(O - 1) * sizeof(float));
            hb_hist[0] = v;
            e_in[b] = table[q];
        }
    }
}

/* Run n steps of every stream from step t0 (see the header for the layouts). Returns n. */
int64_t wavernn_steps(const int64_t *meta, const float *w, float *state, const int64_t *proj, const float *uniforms,
                      float inv_temp, int64_t *classes, int64_t stride, int64_t t0, int64_t n, float *logits_out,
                      int forced) {
    if (meta[0] == 0) mulaw_steps(meta, w, state, proj, uniforms, inv_temp, classes, stride, t0, n, logits_out, forced);
    else if (meta[0] == 2) lpc_steps(meta, w, state, proj, uniforms, inv_temp, (float *)classes, stride, t0, n, logits_out);
    else dual_steps(meta, w, state, proj, uniforms, inv_temp, classes, stride, t0, n, logits_out, forced);
    return n;
}
