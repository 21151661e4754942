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
 *
 * Structure: mu-law and LPC run one step body (gru2_steps, specialised per mode by the compiler: the
 * mode's inputs and outputs are small inline branches on a constant); all three modes share the FC head
 * (fc_head). The products and activations come from native_kernels.h, shared with wavenet_native.c.
 */
#include "native_kernels.h"

/* Y[mr rows, N] += X[mr rows, K] @ W[K, N] (row strides xs, ys; mr a constant): 32-column blocks with each
 * weight load shared by the mr rows, then the last N % 32 columns one row at a time */
NK_INLINE void rows_acc(const int mr, const float *restrict X, int64_t xs, int64_t K, const float *restrict W,
                        int64_t N, float *restrict Y, int64_t ys) {
    const int64_t n32 = N - N % 32;
    for (int64_t n0 = 0; n0 < n32; n0 += 32) rows_block(mr, 2, X, xs, K, W + n0, N, Y + n0, ys, 0);
    for (int64_t r = 0; r < mr; r++)
        for (int64_t n = n32; n < N; n++) {
            float acc = Y[r * ys + n];
            for (int64_t k = 0; k < K; k++) acc += X[r * xs + k] * W[k * N + n];
            Y[r * ys + n] = acc;
        }
}

/* Y[B, N] += X[B, K] @ W[K, N] (row strides xs, ys): eight (then four) rows share each weight load, so a
 * batch reads the weights about B / 8 times instead of B times; the remaining rows go one at a time. */
static void gemm_acc(const float *restrict X, int64_t xs, int64_t B, int64_t K, const float *restrict W, int64_t N,
                     float *restrict Y, int64_t ys) {
    int64_t b0 = 0;
    for (; b0 + 8 <= B; b0 += 8) rows_acc(8, X + b0 * xs, xs, K, W, N, Y + b0 * ys, ys);
    for (; b0 + 4 <= B; b0 += 4) rows_acc(4, X + b0 * xs, xs, K, W, N, Y + b0 * ys, ys);
    for (; b0 < B; b0++) gemv_acc(X + b0 * xs, K, W, N, Y + b0 * ys);
}

/* One GRU update in place: h[S] <- lerp(n, h, z) with r, z = sigmoid(gi + gh), n = tanh(gi_n + r * gh_n);
 * gi, gh [3S] in gate order r, z, n (gh includes the hidden bias, as torch's GRU). */
static void gru(const float *restrict gi, const float *restrict gh, float *restrict h, int64_t S) {
    for (int64_t j = 0; j < S; j++) {
        const float r = sigmoid_f(gi[j] + gh[j]);
        const float z = sigmoid_f(gi[S + j] + gh[S + j]);
        const float n = tanh_f(gi[2 * S + j] + r * gh[2 * S + j]);
        h[j] = n + z * (h[j] - n);
    }
}

/* The sample inputs' share of column j of a layer: sum over d < D of f[d] * Wx[d * stride + j] (Wx [D, stride]),
 * summed left to right as the torch stepper does. D is 1 (mu-law: the last class's value), 2 (dual: the
 * previous coarse and fine values) or 3 (LPC: s_{t-1}, p_t, e_{t-1}), a constant at every call. */
NK_INLINE float sample_inputs(const int D, const float *f, const float *restrict Wx, int64_t stride, int64_t j) {
    float acc = f[0] * Wx[j];
    if (D > 1) acc += f[1] * Wx[stride + j];
    if (D > 2) acc += f[2] * Wx[2 * stride + j];
    return acc;
}

/* The FC head of B streams: logits[B, K] = relu(relu(x @ w1 + p1) @ w2 + p2) @ w3 + b3, with x [B, in]
 * (row stride xs), per-stream conditioning rows p1, p2 [B, F] and scratch y, y2 [B, F]. */
static void fc_head(const float *x, int64_t xs, int64_t B, int64_t in, const float *w1, const float *p1,
                    const float *w2, const float *p2, const float *w3, const float *b3, int64_t F, int64_t K,
                    float *y, float *y2, float *logits) {
    fill_rows(y, B, F, p1, F);
    gemm_acc(x, xs, B, in, w1, F, y, F);
    relu_inplace(y, B * F);
    fill_rows(y2, B, F, p2, F);
    gemm_acc(y, F, B, F, w2, F, y2, F);
    relu_inplace(y2, B * F);
    fill_rows(logits, B, K, b3, 0);
    gemm_acc(y2, F, B, F, w3, K, logits, K);
}

/* The class drawn from logits[K]: argmax when inv_temp == 0, else torch's
 * searchsorted(cdf, u * cdf[-1], right=True) with cdf = cumsum(softmax(logits * inv_temp)), computed the
 * way torch's CPU kernels do (probabilities normalised in float, the running sum kept in double and
 * rounded to float per class), so that only the exp and the logits' own rounding differ. */
static int64_t draw(const float *restrict logits, int64_t K, float inv_temp, float u, float *restrict work) {
    if (inv_temp == 0.0f) return argmax(logits, NULL, K);
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

/* The two-GRU network of the mu-law and LPC modes, read from either layout (see the header). */
typedef struct {
    int64_t B, R, F, K, O; /* O: LPC order (0: mu-law) */
    const float *i_x, *g1_x, *hh1, *bhh1, *hh2, *bhh2, *w2x, *wf1x, *wf2x, *fc3, *bfc3, *table;
    const float *decode; /* LPC only, as mu and inv_log */
    float mu, inv_log;
    float *h1, *h2, *hist; /* hist: LPC only */
    float *last; /* the drawn class's value per stream: mu-law x[B], LPC e_in[B] */
    float *gh1, *gh2, *gi, *x1, *y, *y2, *logits, *work;
} gru2_net;

static gru2_net gru2_layout(const int64_t *meta, const float *w, float *st, const int lpc) {
    const int64_t *wo = meta + (lpc ? 6 : 5), *so = wo + (lpc ? 14 : 12);
    const int64_t *scratch = so + (lpc ? 4 : 3); /* after h1 h2 x (mu-law) or h1 h2 hist e_in (LPC) */
    gru2_net net = {
        .B = meta[1], .R = meta[2], .F = meta[3], .K = meta[4], .O = lpc ? meta[5] : 0,
        .i_x = w + wo[0], .g1_x = w + wo[1], .hh1 = w + wo[2], .bhh1 = w + wo[3], .hh2 = w + wo[4],
        .bhh2 = w + wo[5], .w2x = w + wo[6], .wf1x = w + wo[7], .wf2x = w + wo[8], .fc3 = w + wo[9],
        .bfc3 = w + wo[10], .table = w + wo[11], .decode = lpc ? w + wo[12] : NULL,
        .mu = lpc ? w[wo[13]] : 0.0f, .inv_log = lpc ? w[wo[13] + 1] : 0.0f,
        .h1 = st + so[0], .h2 = st + so[1], .hist = lpc ? st + so[2] : NULL, .last = st + so[lpc ? 3 : 2],
        .gh1 = st + scratch[0], .gh2 = st + scratch[1], .gi = st + scratch[2], .x1 = st + scratch[3],
        .y = st + scratch[4], .y2 = st + scratch[5], .logits = st + scratch[6], .work = st + scratch[7],
    };
    return net;
}

/* n steps of the mu-law (lpc = 0) or LPC (lpc = 1, a constant at each call: the compiler makes one copy per
 * mode, with no mode test left in the loops over columns) network. Mu-law reads or writes classes; LPC
 * draws always and writes the signal (see the header). */
NK_INLINE void gru2_steps(const int lpc, const gru2_net *net, const int64_t *proj, const float *uniforms,
                          float inv_temp, int64_t *classes, float *signal, int64_t stride, int64_t t0, int64_t n,
                          float *logits_out, int forced) {
    const int64_t B = net->B, R = net->R, F = net->F, K = net->K, O = net->O, G = 3 * R;
    const int D = lpc ? 3 : 1;
    float *h1 = net->h1, *h2 = net->h2, *gi = net->gi, *x1 = net->x1, *logits = net->logits;
    for (int64_t s = 0; s < n; s++) {
        const int64_t t = t0 + s;
        const float *icond = P(0) + s * B * R, *pg1 = P(1) + s * B * G, *pg2 = P(2) + s * B * G;
        const float *plpc = lpc ? P(5) + s * B * O : NULL;
        float pred[B > 0 ? B : 1];
        fill_rows(net->gh1, B, G, net->bhh1, 0);
        gemm_acc(h1, R, B, R, net->hh1, G, net->gh1, G);
        fill_rows(net->gh2, B, G, net->bhh2, 0);
        gemm_acc(h2, R, B, R, net->hh2, G, net->gh2, G);
        for (int64_t b = 0; b < B; b++) {
            float f[3] = {net->last[b], 0.0f, 0.0f};
            if (lpc) { /* f = [compand(s_{t-1}), compand(p_t), e_{t-1}], p_t = hist . lpc */
                const float *hb_hist = net->hist + b * O, *c = plpc + b * O;
                float p = 0.0f;
                for (int64_t k = 0; k < O; k++) p += hb_hist[k] * c[k];
                pred[b] = p;
                f[2] = f[0];
                f[0] = compand(hb_hist[0], net->mu, net->inv_log);
                f[1] = compand(p, net->mu, net->inv_log);
            }
            float *g = gi + b * G, *hb = h1 + b * R, *xo = x1 + b * R;
            const float *pg = pg1 + b * G, *ic = icond + b * R;
            for (int64_t j = 0; j < G; j++) g[j] = pg[j] + sample_inputs(D, f, net->g1_x, G, j);
            gru(g, net->gh1 + b * G, hb, R);
            for (int64_t j = 0; j < R; j++) xo[j] = hb[j] + (ic[j] + sample_inputs(D, f, net->i_x, R, j));
        }
        fill_rows(gi, B, G, pg2, G);
        gemm_acc(x1, R, B, R, net->w2x, G, gi, G);
        for (int64_t b = 0; b < B; b++) {
            float *hb = h2 + b * R, *xo = x1 + b * R;
            gru(gi + b * G, net->gh2 + b * G, hb, R);
            for (int64_t j = 0; j < R; j++) xo[j] = hb[j] + xo[j];
        }
        fc_head(x1, R, B, R, net->wf1x, P(3) + s * B * F, net->wf2x, P(4) + s * B * F, net->fc3, net->bfc3, F, K,
                net->y, net->y2, logits);
        if (logits_out) memcpy(logits_out + s * B * K, logits, (size_t)(B * K) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            int64_t q;
            if (!lpc && forced) q = classes[b * stride + t];
            else q = draw(logits + b * K, K, inv_temp, uniforms ? uniforms[s * B + b] : 0.0f, net->work);
            if (lpc) { /* s_t = clamp(p_t + e_t), pushed onto the history */
                float v = pred[b] + net->decode[q];
                v = v > 1.0f ? 1.0f : (v < -1.0f ? -1.0f : v);
                signal[b * stride + t] = v;
                float *hb_hist = net->hist + b * O;
                memmove(hb_hist + 1, hb_hist, (size_t)(O - 1) * sizeof(float));
                hb_hist[0] = v;
            } else if (!forced) {
                classes[b * stride + t] = q;
            }
            net->last[b] = net->table[q];
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
        const float *pgi = P(0) + s * B * G;
        int64_t coarse[B > 0 ? B : 1];
        fill_rows(gh, B, G, bhh, 0);
        gemm_acc(h, H, B, H, hh, G, gh, G);
        for (int64_t b = 0; b < B; b++) {
            const float pc_pf[2] = {prev[2 * b], prev[2 * b + 1]}; /* the previous coarse and fine values */
            float *gb = gi + b * G;
            const float *pb = pgi + b * G;
            for (int64_t j = 0; j < G; j++) gb[j] = pb[j] + sample_inputs(2, pc_pf, w_prev, G, j);
            float *hb = hn + b * H;
            memcpy(hb, h + b * H, (size_t)H * sizeof(float));
            gru(gb, gh + b * G, hb, half); /* coarse half: blind to the current coarse value */
        }
        /* coarse head on h_coarse = hn[:, :half] */
        fc_head(hn, H, B, half, cw1, P(1) + s * B * F, cw2, P(3) + s * B * F, cfc3, cb3, F, K, y, y2, logits);
        if (logits_out) memcpy(logits_out + (2 * s) * B * K, logits, (size_t)(B * K) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            int64_t c;
            if (forced) c = classes[b * stride + t] / 256;
            else c = draw(logits + b * K, K, inv_temp, uniforms ? uniforms[(s * B + b) * 2] : 0.0f, work);
            coarse[b] = c;
            const float c_in = table[c];
            float *gb = gi + b * G + g;
            for (int64_t j = 0; j < g; j++) gb[j] = gb[j] + sample_inputs(1, &c_in, w_cur, g, j);
            gru(gb, gh + b * G + g, hn + b * H + half, half); /* fine half, seeing the chosen coarse value */
            prev[2 * b] = c_in;
        }
        /* fine head on h_fine = hn[:, half:] */
        fc_head(hn + half, H, B, half, fw1, P(2) + s * B * F, fw2, P(4) + s * B * F, ffc3, fb3, F, K, y, y2, logits);
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

/* Run n steps of every stream from step t0 (see the header for the layouts). Returns n. */
int64_t wavernn_steps(const int64_t *meta, const float *w, float *state, const int64_t *proj, const float *uniforms,
                      float inv_temp, int64_t *classes, int64_t stride, int64_t t0, int64_t n, float *logits_out,
                      int forced) {
    if (meta[0] == 0) {
        const gru2_net net = gru2_layout(meta, w, state, 0);
        gru2_steps(0, &net, proj, uniforms, inv_temp, classes, NULL, stride, t0, n, logits_out, forced);
    } else if (meta[0] == 2) {
        const gru2_net net = gru2_layout(meta, w, state, 1);
        gru2_steps(1, &net, proj, uniforms, inv_temp, NULL, (float *)classes, stride, t0, n, logits_out, 0);
    } else {
        dual_steps(meta, w, state, proj, uniforms, inv_temp, classes, stride, t0, n, logits_out, forced);
    }
    return n;
}
