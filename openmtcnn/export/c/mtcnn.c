/* MTCNN cascade in integers: the C twin of openmtcnn.compress.int8_cascade (same integers).
 *
 * Fixed point: boxes and landmarks in 1/16 pixel, pyramid scales in 1/65536, head outputs in
 * 1/4096, overlap thresholds in 1/1024. Images are resized by exact area averaging with
 * integer weights. P-Net streams each pyramid level row by row (conv1 + ReLU + max-pool
 * fused), so no pyramid level or full P-Net feature map is ever held.
 */
#include <string.h>

#include "mtcnn.h"

#define ONE 16          /* one pixel in box units */
#define Q_HEAD 12       /* head outputs: 12 fraction bits */
#define COORD_LIMIT (1L << 20)
#define HEAD_LIMIT (1L << 30)
#define CELL 12
#define STRIDE 2

typedef struct {
    int32_t box[4]; /* x1, y1, x2, y2 in 1/16 pixel */
    int32_t key;    /* face logit in 1/4096 of the stage that scored it */
    int32_t seq;    /* order of arrival: breaks ties between equal logits */
    int32_t aux[4]; /* R-Net box offsets, waiting for NMS */
} cand_t;

/* Compile-time checks: the arena fits the RAM budget next to the frame and a stack reserve; the
 * layout agrees with the generator; signed right shifts are arithmetic (floor), as in NumPy. */
typedef char mtcnn_check_ram[(MTCNN_ARENA_BYTES + MTCNN_FRAME_BYTES + MTCNN_STACK_RESERVE <= MTCNN_RAM_BUDGET) ? 1 : -1];
typedef char mtcnn_check_cand[(sizeof(cand_t) == MTCNN_CAND_BYTES) ? 1 : -1];
typedef char mtcnn_check_shift[(((-3) >> 1) == -2) ? 1 : -1];

static int32_t arena[(MTCNN_ARENA_BYTES + 3) / 4];
#define AT(offset, type) ((type *)((int8_t *)arena + (offset)))

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* ---- integer layers -------------------------------------------------------------------- */

static int64_t requant(int32_t acc, int32_t mult, int shift)
{
    return ((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift;
}

/* One output row of a k x k valid convolution + ReLU (the int8 clamp): rows[] are the k input rows. */
static void conv_row(const int8_t *const *rows, int w_in, const mtcnn_layer_t *L, int8_t *out)
{
    const int k = L->k, cin = L->cin, cout = L->cout, kc = k * cin, w_out = w_in - k + 1;
    int x, co, ky, i;
    for (x = 0; x < w_out; x++) {
        const int8_t *wt = L->w;
        for (co = 0; co < cout; co++) {
            int32_t acc = L->bias[co];
            for (ky = 0; ky < k; ky++) {
                const int8_t *src = rows[ky] + x * cin;
                for (i = 0; i < kc; i++)
                    acc += (int32_t)wt[i] * src[i];
                wt += kc;
            }
            out[x * cout + co] = (int8_t)clamp64(requant(acc, L->mult[co], L->shift[co]) + MTCNN_ACT_ZERO, -128, 127);
        }
    }
}

/* A head on one feature vector: int32 outputs in 1/4096. */
static void head(const int8_t *in, const mtcnn_layer_t *L, int32_t *out)
{
    const int8_t *wt = L->w;
    int co, i;
    for (co = 0; co < L->cout; co++, wt += L->cin) {
        int32_t acc = L->bias[co];
        for (i = 0; i < L->cin; i++)
            acc += (int32_t)wt[i] * in[i];
        out[co] = (int32_t)clamp64(requant(acc, L->mult[co], L->shift[co]), -HEAD_LIMIT, HEAD_LIMIT);
    }
}

static int pooled(int n, int k, int s) { return (n - k + s - 1) / s + 1; }

/* One output row of a k x k, stride s max-pool in ceil mode over the n given rows. */
static void pool_row(const int8_t *const *rows, int n, int w_in, int c, int k, int s, int8_t *out)
{
    const int w_out = pooled(w_in, k, s);
    int x, ch, r, xx;
    for (x = 0; x < w_out; x++) {
        const int x0 = x * s, x1 = x0 + k < w_in ? x0 + k : w_in;
        for (ch = 0; ch < c; ch++) {
            int8_t m = -128;
            for (r = 0; r < n; r++)
                for (xx = x0; xx < x1; xx++)
                    if (rows[r][xx * c + ch] > m)
                        m = rows[r][xx * c + ch];
            out[x * c + ch] = m;
        }
    }
}

/* Convolution + ReLU, then the layer's max-pool if any, on a whole h x w map; pooling holds
 * only pool_k convolution rows (in ring). */
static void conv_pool(const int8_t *in, int h, int w, const mtcnn_layer_t *L, int8_t *ring, int8_t *out)
{
    const int k = L->k, hc = h - k + 1, wc = w - k + 1, row_in = w * L->cin, row_out = wc * L->cout;
    const int8_t *rows[MTCNN_MAX_K];
    int y, r, p, done = -1;
    if (!L->pool_k) {
        for (y = 0; y < hc; y++) {
            for (r = 0; r < k; r++)
                rows[r] = in + (y + r) * row_in;
            conv_row(rows, w, L, out + y * row_out);
        }
        return;
    }
    for (p = 0; p < pooled(hc, L->pool_k, L->pool_s); p++) {
        const int y0 = p * L->pool_s, y1 = y0 + L->pool_k < hc ? y0 + L->pool_k : hc;
        for (y = done + 1 > y0 ? done + 1 : y0; y < y1; y++) {
            for (r = 0; r < k; r++)
                rows[r] = in + (y + r) * row_in;
            conv_row(rows, w, L, ring + (y % L->pool_k) * row_out);
        }
        done = y1 - 1;
        for (y = y0; y < y1; y++)
            rows[y - y0] = ring + (y % L->pool_k) * row_out;
        pool_row(rows, y1 - y0, wc, L->cout, L->pool_k, L->pool_s, out + p * pooled(wc, L->pool_k, L->pool_s) * L->cout);
    }
}

/* R-Net or O-Net on the int8 crop at MTCNN_OFF_CROP: body layers ping-pong between two buffers. */
static void run_net(const mtcnn_net_t *net, int32_t *out)
{
    const int8_t *src = AT(MTCNN_OFF_CROP, int8_t);
    int h = net->size, w = net->size, i;
    for (i = 0; i < net->n_layers; i++) {
        const mtcnn_layer_t *L = &net->layers[i];
        int8_t *dst = (i % 2 == 0) ? AT(MTCNN_OFF_ACT_A, int8_t) : AT(MTCNN_OFF_ACT_B, int8_t);
        if (L->fc) {
            const int8_t *rows[1];
            rows[0] = src;
            conv_row(rows, 1, L, dst);
            h = w = 1;
        } else {
            conv_pool(src, h, w, L, AT(MTCNN_OFF_RING, int8_t), dst);
            h -= L->k - 1;
            w -= L->k - 1;
            if (L->pool_k) {
                h = pooled(h, L->pool_k, L->pool_s);
                w = pooled(w, L->pool_k, L->pool_s);
            }
        }
        src = dst;
    }
    head(src, &net->head, out);
}

/* ---- integer resampling ----------------------------------------------------------------- */

/* Row r of the box (1/16 pixel) area-averaged to out_w x out_h, as int8 (pixel - 128).
 * Cell edges are exact in units of 1/(16 out) pixel; outside the image counts as black. */
static void resample_row(const uint8_t *rgb, int w, int h, const int32_t *box, int out_w, int out_h, int r,
                         int8_t *row)
{
    const int64_t ux = (int64_t)ONE * out_w, uy = (int64_t)ONE * out_h;
    const int64_t sw = (int64_t)box[2] - box[0], sh = (int64_t)box[3] - box[1];
    const int64_t y0 = (int64_t)box[1] * out_h + r * sh, y1 = y0 + sh;
    const uint64_t den = (uint64_t)(sw * sh);
    const int ya = (int)clamp64(floordiv(y0, uy), 0, h), yb = (int)clamp64(floordiv(y1 - 1, uy), -1, h - 1);
    int j, y, x;
    for (j = 0; j < out_w; j++) {
        const int64_t x0 = (int64_t)box[0] * out_w + j * sw, x1 = x0 + sw;
        const int xa = (int)clamp64(floordiv(x0, ux), 0, w), xb = (int)clamp64(floordiv(x1 - 1, ux), -1, w - 1);
        uint64_t acc0 = 0, acc1 = 0, acc2 = 0;
        for (y = ya; y <= yb; y++) {
            const uint64_t wy = (uint64_t)(min64(y1, (y + 1) * uy) - max64(y0, y * uy));
            const uint8_t *p = rgb + ((int32_t)y * w + xa) * 3;
            uint32_t s0 = 0, s1 = 0, s2 = 0;
            for (x = xa; x <= xb; x++, p += 3) {
                const uint32_t wx = (uint32_t)(min64(x1, (x + 1) * ux) - max64(x0, x * ux));
                s0 += wx * p[0];
                s1 += wx * p[1];
                s2 += wx * p[2];
            }
            acc0 += wy * s0;
            acc1 += wy * s1;
            acc2 += wy * s2;
        }
        row[3 * j + 0] = (int8_t)((int32_t)((acc0 + den / 2) / den) - 128);
        row[3 * j + 1] = (int8_t)((int32_t)((acc1 + den / 2) / den) - 128);
        row[3 * j + 2] = (int8_t)((int32_t)((acc2 + den / 2) / den) - 128);
    }
}

/* Row r of the box bilinearly sampled at size x size pixel centres (positions exact in
 * 1/(32 size) pixel), as int8; pixels outside the image are black. */
static void bilinear_row(const uint8_t *rgb, int w, int h, const int32_t *box, int size, int r, int8_t *row)
{
    const int64_t unit = 2 * ONE * size, den = unit * unit;
    const int64_t py = (int64_t)box[1] * 2 * size + ((int64_t)box[3] - box[1]) * (2 * r + 1) - ONE * size;
    const int64_t y0 = floordiv(py, unit), fy = py - y0 * unit;
    int j, c, dy, dx;
    for (j = 0; j < size; j++) {
        const int64_t px = (int64_t)box[0] * 2 * size + ((int64_t)box[2] - box[0]) * (2 * j + 1) - ONE * size;
        const int64_t x0 = floordiv(px, unit), fx = px - x0 * unit;
        int64_t acc[3] = {0, 0, 0};
        for (dy = 0; dy < 2; dy++) {
            const int64_t y = y0 + dy, wy = dy ? fy : unit - fy;
            if (y < 0 || y >= h)
                continue;
            for (dx = 0; dx < 2; dx++) {
                const int64_t x = x0 + dx, wx = dx ? fx : unit - fx;
                if (x < 0 || x >= w)
                    continue;
                for (c = 0; c < 3; c++)
                    acc[c] += wy * wx * rgb[((int32_t)y * w + (int32_t)x) * 3 + c];
            }
        }
        for (c = 0; c < 3; c++)
            row[3 * j + c] = (int8_t)((int32_t)((acc[c] + den / 2) / den) - 128);
    }
}

/* A square crop for R-Net / O-Net: area-averaged when the box covers at least size pixels, else bilinear. */
static void crop(const uint8_t *rgb, int w, int h, const int32_t *box, int size)
{
    int8_t *out = AT(MTCNN_OFF_CROP, int8_t);
    const int32_t bw = box[2] - box[0], bh = box[3] - box[1];
    int r;
    for (r = 0; r < size; r++) {
        if ((bw > bh ? bw : bh) >= size * ONE)
            resample_row(rgb, w, h, box, size, size, r, out + r * size * 3);
        else
            bilinear_row(rgb, w, h, box, size, r, out + r * size * 3);
    }
}

/* ---- boxes ------------------------------------------------------------------------------ */

static void regress(int32_t *b, const int32_t *off)
{
    const int64_t w = (int64_t)b[2] - b[0], h = (int64_t)b[3] - b[1];
    int i;
    for (i = 0; i < 4; i++)
        b[i] = (int32_t)clamp64(b[i] + (((int64_t)off[i] * ((i & 1) ? h : w) + (1 << (Q_HEAD - 1))) >> Q_HEAD),
                                -COORD_LIMIT, COORD_LIMIT);
}

static void square(const int32_t *b, int32_t *s)
{
    const int32_t w = b[2] - b[0], h = b[3] - b[1];
    int32_t side = w > h ? w : h;
    if (side < ONE)
        side = ONE;
    s[0] = b[0] - ((side - w) >> 1);
    s[1] = b[1] - ((side - h) >> 1);
    s[2] = s[0] + side;
    s[3] = s[1] + side;
}

static int before(const cand_t *a, const cand_t *b)
{
    return a->key > b->key || (a->key == b->key && a->seq < b->seq);
}

/* Keep the cap best candidates of a stream (arrivals have increasing seq). */
static int push_capped(cand_t *buf, int n, int cap, const cand_t *c)
{
    int i, worst = 0;
    if (n < cap) {
        buf[n] = *c;
        return n + 1;
    }
    for (i = 1; i < n; i++)
        if (before(&buf[worst], &buf[i]))
            worst = i;
    if (c->key > buf[worst].key)
        buf[worst] = *c;
    return n;
}

static int overlaps(const int32_t *a, const int32_t *b, int32_t threshold_q10, int min_mode)
{
    const int64_t iw = min64(a[2], b[2]) - max64(a[0], b[0]), ih = min64(a[3], b[3]) - max64(a[1], b[1]);
    int64_t inter, aa, ab, denom;
    if (iw <= 0 || ih <= 0)
        return 0;
    inter = iw * ih;
    aa = max64((int64_t)a[2] - a[0], 0) * max64((int64_t)a[3] - a[1], 0);
    ab = max64((int64_t)b[2] - b[0], 0) * max64((int64_t)b[3] - b[1], 0);
    denom = min_mode ? min64(aa, ab) : aa + ab - inter;
    return inter * 1024 > (int64_t)threshold_q10 * denom;
}

/* Greedy NMS in place: sorted best first, a box survives when no kept box before it overlaps it. */
static int nms(cand_t *c, int n, int32_t threshold_q10, int min_mode)
{
    int i, j, kept = 0;
    for (i = 1; i < n; i++) { /* insertion sort: stable and allocation-free */
        cand_t t = c[i];
        for (j = i; j > 0 && before(&t, &c[j - 1]); j--)
            c[j] = c[j - 1];
        c[j] = t;
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < kept && !overlaps(c[j].box, c[i].box, threshold_q10, min_mode); j++)
            ;
        if (j == kept)
            c[kept++] = c[i];
    }
    return kept;
}

/* ---- P-Net, streamed -------------------------------------------------------------------- */

/* P-Net on the frame resized to lw x lh, one output row at a time: either the raw outputs
 * (map) or the windows passing the threshold, regressed, as capped candidates. */
static int pnet_level(const uint8_t *rgb, int w, int h, int lw, int lh, int32_t scale, int32_t *map, cand_t *cands)
{
    const mtcnn_layer_t *L1 = &mtcnn_model_pnet.layers[0], *L2 = &mtcnn_model_pnet.layers[1], *L3 = &mtcnn_model_pnet.layers[2];
    const int k1 = L1->k, k2 = L2->k, k3 = L3->k, c1 = L1->cout, c2 = L2->cout, c3 = L3->cout;
    const int wc1 = lw - k1 + 1, hc1 = lh - k1 + 1, wp = pooled(wc1, 2, 2), hp = pooled(hc1, 2, 2);
    const int w2 = wp - k2 + 1, wo = w2 - k3 + 1;
    int8_t *level = AT(MTCNN_OFF_P_LEVEL, int8_t), *conv1 = AT(MTCNN_OFF_P_CONV1, int8_t);
    int8_t *pool = AT(MTCNN_OFF_P_POOL, int8_t), *conv2 = AT(MTCNN_OFF_P_CONV2, int8_t);
    int8_t *conv3 = AT(MTCNN_OFF_P_CONV3, int8_t);
    const int32_t whole[4] = {0, 0, w * ONE, h * ONE};
    const int8_t *rows[MTCNN_MAX_K];
    int next = 0, n = 0, p, y, r, x;
    for (p = 0; p < hp; p++) {
        int got = 0;
        for (y = 2 * p; y < 2 * p + 2 && y < hc1; y++, got++) { /* conv1 rows 2p, 2p+1 */
            for (; next < y + k1; next++)
                resample_row(rgb, w, h, whole, lw, lh, next, level + (next % (k1 + 1)) * lw * 3);
            for (r = 0; r < k1; r++)
                rows[r] = level + ((y + r) % (k1 + 1)) * lw * 3;
            conv_row(rows, lw, L1, conv1 + got * wc1 * c1);
        }
        rows[0] = conv1;
        rows[1] = conv1 + wc1 * c1;
        pool_row(rows, got, wc1, c1, 2, 2, pool + (p % k2) * wp * c1);
        if (p < k2 - 1)
            continue;
        y = p - (k2 - 1); /* conv2 row */
        for (r = 0; r < k2; r++)
            rows[r] = pool + ((y + r) % k2) * wp * c1;
        conv_row(rows, wp, L2, conv2 + (y % k3) * w2 * c2);
        if (y < k3 - 1)
            continue;
        y -= k3 - 1; /* output row */
        for (r = 0; r < k3; r++)
            rows[r] = conv2 + ((y + r) % k3) * w2 * c2;
        conv_row(rows, w2, L3, conv3);
        for (x = 0; x < wo; x++) {
            int32_t o[MTCNN_PNET_OUT];
            cand_t c;
            head(conv3 + x * c3, &mtcnn_model_pnet.head, o);
            if (map) {
                memcpy(map + (y * wo + x) * MTCNN_PNET_OUT, o, sizeof o);
                n++;
                continue;
            }
            if (o[0] < MTCNN_THRESHOLD_P)
                continue;
            c.box[0] = (int32_t)((((int64_t)(STRIDE * x) << 20) + scale / 2) / scale);
            c.box[1] = (int32_t)((((int64_t)(STRIDE * y) << 20) + scale / 2) / scale);
            c.box[2] = (int32_t)((((int64_t)(STRIDE * x + CELL) << 20) + scale / 2) / scale);
            c.box[3] = (int32_t)((((int64_t)(STRIDE * y + CELL) << 20) + scale / 2) / scale);
            regress(c.box, o + 1);
            c.key = o[0];
            c.seq = y * wo + x;
            memset(c.aux, 0, sizeof c.aux);
            n = push_capped(cands, n, MTCNN_LEVEL_CAP, &c);
        }
    }
    return n;
}

/* e^x for x <= 0 in float, relative error about 1e-6: 2^(x log2 e) = 2^n * 2^f, a degree-8
 * series for 2^f. Spares libm (whose expf pulls in errno state on newlib). */
static float exp_neg(float x)
{
    const float t = x * 1.44269504f;
    int n = (int)t;
    float f, p, two_n;
    uint32_t bits;
    if (t < -126.0f)
        return 0.0f;
    if ((float)n > t)
        n--;
    f = (t - (float)n) * 0.693147181f;
    p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720 +
        f * (1.0f / 5040 + f * (1.0f / 40320))))))));
    bits = (uint32_t)(n + 127) << 23;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

/* Face probability of a logit in 1/4096. */
static float sigmoid_q12(int32_t logit)
{
    const float e = exp_neg(-(float)(logit < 0 ? -logit : logit) / (float)(1 << Q_HEAD));
    return logit >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* ---- the cascade ------------------------------------------------------------------------ */

int mtcnn_detect(const uint8_t *rgb, int w, int h, mtcnn_face_t *out, int max_faces)
{
    cand_t *prop = AT(MTCNN_OFF_PROPOSALS, cand_t), *level = AT(MTCNN_OFF_P_CANDS, cand_t);
    int32_t *lmk = AT(MTCNN_OFF_LANDMARKS, int32_t);
    int32_t scale = MTCNN_SCALE0_Q16, o[MTCNN_ONET_OUT], sq[4];
    int n = 0, seq = 0, i, k, m;
    if (!rgb || w < 1 || h < 1 || w > MTCNN_MAX_W || h > MTCNN_MAX_H || max_faces < 0 || (!out && max_faces > 0))
        return -1;
    while ((int64_t)(w < h ? w : h) * scale >= ((int64_t)CELL << 16)) { /* pyramid */
        const int lw = (int)(((int64_t)w * scale + 0xFFFF) >> 16), lh = (int)(((int64_t)h * scale + 0xFFFF) >> 16);
        m = nms(level, pnet_level(rgb, w, h, lw, lh, scale, 0, level), MTCNN_NMS_LEVEL_Q10, 0);
        for (i = 0; i < m; i++) {
            cand_t c = level[i];
            c.seq = seq++;
            n = push_capped(prop, n, MTCNN_PROPOSAL_CAP, &c);
        }
        scale = (int32_t)(((int64_t)scale * MTCNN_FACTOR_Q16 + 0x8000) >> 16);
    }
    n = nms(prop, n, MTCNN_NMS_PYRAMID_Q10, 0);

    for (i = 0, m = 0; i < n && i < MTCNN_RNET_CAP; i++) { /* R-Net: survivors move to the front */
        square(prop[i].box, sq);
        crop(rgb, w, h, sq, 24);
        run_net(&mtcnn_model_rnet, o);
        if (o[0] >= MTCNN_THRESHOLD_R) {
            memcpy(prop[m].box, sq, sizeof sq);
            memcpy(prop[m].aux, o + 1, sizeof prop[m].aux);
            prop[m].key = o[0];
            prop[m].seq = i;
            m++;
        }
    }
    n = nms(prop, m, MTCNN_NMS_RNET_Q10, 0);
    for (i = 0; i < n; i++)
        regress(prop[i].box, prop[i].aux);

    for (i = 0, m = 0; i < n && i < MTCNN_ONET_CAP; i++) { /* O-Net, landmarks kept by arrival */
        square(prop[i].box, sq);
        crop(rgb, w, h, sq, 48);
        run_net(&mtcnn_model_onet, o);
        if (o[0] < MTCNN_THRESHOLD_O)
            continue;
        for (k = 0; k < 5; k++) {
            lmk[i * 10 + 2 * k] = (int32_t)clamp64(
                sq[0] + (((int64_t)o[5 + k] * (sq[2] - sq[0]) + (1 << (Q_HEAD - 1))) >> Q_HEAD), -COORD_LIMIT, COORD_LIMIT);
            lmk[i * 10 + 2 * k + 1] = (int32_t)clamp64(
                sq[1] + (((int64_t)o[10 + k] * (sq[3] - sq[1]) + (1 << (Q_HEAD - 1))) >> Q_HEAD), -COORD_LIMIT, COORD_LIMIT);
        }
        memcpy(prop[m].box, sq, sizeof sq);
        regress(prop[m].box, o + 1);
        prop[m].key = o[0];
        prop[m].seq = i;
        m++;
    }
    n = nms(prop, m, MTCNN_NMS_FINAL_Q10, 1);

    for (i = 0; i < n && i < max_faces; i++) {
        mtcnn_face_t *f = &out[i];
        const int32_t *l = lmk + prop[i].seq * 10;
        for (k = 0; k < 4; k++)
            f->q_box[k] = (int32_t)clamp64(prop[i].box[k], 0, (int64_t)((k & 1) ? h : w) * ONE);
        for (k = 0; k < 10; k++) {
            f->q_landmarks[k] = (int32_t)clamp64(l[k], 0, (int64_t)((k & 1) ? h : w) * ONE);
            f->landmarks[k] = (float)f->q_landmarks[k] / ONE;
        }
        f->x1 = (float)f->q_box[0] / ONE;
        f->y1 = (float)f->q_box[1] / ONE;
        f->x2 = (float)f->q_box[2] / ONE;
        f->y2 = (float)f->q_box[3] / ONE;
        f->q_logit = prop[i].key;
        f->score = sigmoid_q12(prop[i].key);
    }
    return i;
}

/* ---- the nets alone --------------------------------------------------------------------- */

int mtcnn_pnet_map(const uint8_t *rgb, int w, int h, int32_t *out)
{
    if (!rgb || !out || w < CELL || h < CELL || w > MTCNN_LEVEL0_W)
        return -1;
    return pnet_level(rgb, w, h, w, h, 1 << 16, out, 0);
}

static void run_on_crop(const mtcnn_net_t *net, const uint8_t *crop_rgb, int32_t *out)
{
    int8_t *dst = AT(MTCNN_OFF_CROP, int8_t);
    int i;
    for (i = 0; i < net->size * net->size * 3; i++)
        dst[i] = (int8_t)(crop_rgb[i] - 128);
    run_net(net, out);
}

void mtcnn_rnet(const uint8_t *crop24, int32_t *out) { run_on_crop(&mtcnn_model_rnet, crop24, out); }

void mtcnn_onet(const uint8_t *crop48, int32_t *out) { run_on_crop(&mtcnn_model_onet, crop48, out); }
