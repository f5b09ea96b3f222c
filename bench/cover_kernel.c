/* A compiled cover kernel for bench/engine.py: the physical limit the engine is measured against.
 *
 * It computes the same lapses as coverwatch's engine for bench/replay.py's scenario: point posts
 * with one rule each (within/release hysteresis, accuracy added to the distance, stale_after),
 * everyone's duty and capabilities set once at the start, rules driven by one flag whose changes
 * are given. Fixes come sorted by (t, seq). Per fix: the rules near it from a grid, the new
 * memberships (in within, kept in the band if linked), +1/-1 steps per (officer, rule) run; then
 * per rule the steps sorted by time and swept with the flag into lapses. Not part of the product.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define K 16 /* memberships per officer at once */
#define NONE INT64_MIN

typedef struct { int64_t t; int32_t rule; int32_t d; } step_t;

static step_t *steps;
static int64_t n_steps, cap_steps;

static int emit(int32_t rule, int64_t t, int32_t d) {
    if (n_steps == cap_steps) {
        cap_steps = cap_steps ? 2 * cap_steps : 1 << 20;
        step_t *p = realloc(steps, cap_steps * sizeof(step_t));
        if (!p) return -1;
        steps = p;
    }
    steps[n_steps].t = t; steps[n_steps].rule = rule; steps[n_steps].d = d;
    n_steps++;
    return 0;
}

static int by_rule_time(const void *a, const void *b) {
    const step_t *x = a, *y = b;
    if (x->rule != y->rule) return x->rule < y->rule ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

/* Returns the number of lapses written, or -1 (out of memory / too many memberships / output). */
int64_t cover_kernel(
    int64_t n_fix, const int64_t *t, const int32_t *off, const double *x, const double *y,
    const double *acc, int64_t n_rules, const double *px, const double *py,
    const double *within, const double *release, const int64_t *need, const int64_t *grace,
    const int32_t *cap_col, const uint8_t *when, int64_t n_off, int64_t n_caps,
    const uint8_t *caps, int64_t n_flag, const int64_t *flag_t, const uint8_t *flag_v,
    uint8_t flag_initial, int64_t start, int64_t end, int64_t stale, int64_t max_out,
    int64_t *o_rule, int64_t *o_start, int64_t *o_end, int64_t *o_alert, int64_t *o_min)
{
    /* The grid: each rule in every cell its release box touches. */
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY, rmax = 1.0;
    for (int64_t r = 0; r < n_rules; r++) {
        if (px[r] - release[r] < x0) x0 = px[r] - release[r];
        if (py[r] - release[r] < y0) y0 = py[r] - release[r];
        if (px[r] + release[r] > x1) x1 = px[r] + release[r];
        if (py[r] + release[r] > y1) y1 = py[r] + release[r];
        if (release[r] > rmax) rmax = release[r];
    }
    double cell = 2 * rmax;
    int64_t nx = (int64_t)((x1 - x0) / cell) + 1, ny = (int64_t)((y1 - y0) / cell) + 1;
    int64_t *count = calloc(nx * ny + 1, sizeof(int64_t));
    for (int64_t r = 0; r < n_rules; r++)
        for (int64_t gy = (int64_t)((py[r] - release[r] - y0) / cell);
             gy <= (int64_t)((py[r] + release[r] - y0) / cell); gy++)
            for (int64_t gx = (int64_t)((px[r] - release[r] - x0) / cell);
                 gx <= (int64_t)((px[r] + release[r] - x0) / cell); gx++)
                count[gy * nx + gx + 1]++;
    for (int64_t c = 0; c < nx * ny; c++) count[c + 1] += count[c];
    int64_t *fill = malloc((nx * ny + 1) * sizeof(int64_t));
    memcpy(fill, count, (nx * ny + 1) * sizeof(int64_t));
    int32_t *items = malloc((count[nx * ny] + 1) * sizeof(int32_t));
    for (int64_t r = 0; r < n_rules; r++)
        for (int64_t gy = (int64_t)((py[r] - release[r] - y0) / cell);
             gy <= (int64_t)((py[r] + release[r] - y0) / cell); gy++)
            for (int64_t gx = (int64_t)((px[r] - release[r] - x0) / cell);
                 gx <= (int64_t)((px[r] + release[r] - x0) / cell); gx++)
                items[fill[gy * nx + gx]++] = (int32_t)r;

    int64_t *last_t = malloc(n_off * sizeof(int64_t));
    int32_t *in = malloc(n_off * K * sizeof(int32_t));
    uint8_t *n_in = calloc(n_off, 1);
    for (int64_t o = 0; o < n_off; o++) last_t[o] = NONE;
    n_steps = 0;

    for (int64_t i = 0; i < n_fix; i++) {
        int32_t o = off[i];
        int32_t *prev = in + (int64_t)o * K, next[K];
        int np = n_in[o], nn = 0;
        int linked = last_t[o] != NONE && t[i] - last_t[o] < stale;
        double fx = floor((x[i] - x0) / cell), fy = floor((y[i] - y0) / cell);
        if (fx >= 0 && fy >= 0 && fx < nx && fy < ny) {
            int64_t c = (int64_t)fy * nx + (int64_t)fx;
            for (int64_t k = count[c]; k < count[c + 1]; k++) {
                int32_t r = items[k];
                double dx = x[i] - px[r], dy = y[i] - py[r];
                double d = sqrt(dx * dx + dy * dy) + acc[i];
                if (d > release[r]) continue;
                int is_in = d <= within[r];
                if (!is_in && linked)
                    for (int j = 0; j < np; j++) if (prev[j] == r) { is_in = 1; break; }
                if (is_in) { if (nn == K) return -1; next[nn++] = r; }
            }
        }
        const uint8_t *mine = caps + (int64_t)o * n_caps;
        for (int j = 0; j < np; j++) {
            int32_t r = prev[j];
            int kept = 0;
            if (linked) for (int q = 0; q < nn; q++) if (next[q] == r) { kept = 1; break; }
            if (!kept && mine[cap_col[r]] && emit(r, linked ? t[i] : last_t[o] + stale, -1)) return -1;
        }
        for (int q = 0; q < nn; q++) {
            int32_t r = next[q];
            int kept = 0;
            if (linked) for (int j = 0; j < np; j++) if (prev[j] == r) { kept = 1; break; }
            if (!kept && mine[cap_col[r]] && emit(r, t[i], +1)) return -1;
        }
        memcpy(prev, next, nn * sizeof(int32_t));
        n_in[o] = (uint8_t)nn;
        last_t[o] = t[i];
    }
    for (int64_t o = 0; o < n_off; o++)
        for (int j = 0; j < n_in[o]; j++) {
            int32_t r = in[o * K + j];
            if (caps[o * n_caps + cap_col[r]] && emit(r, last_t[o] + stale, -1)) return -1;
        }
    qsort(steps, n_steps, sizeof(step_t), by_rule_time);

    /* Per rule: sweep the steps and the flag's changes, instant by instant, from start to end. */
    int64_t n_out = 0, s = 0;
    for (int64_t r = 0; r < n_rules; r++) {
        int64_t e = s;
        while (e < n_steps && steps[e].rule == r) e++;
        int64_t cnt = 0, lapse = NONE, low = 0, f = 0, k = s;
        int active = when[r] ? flag_initial : 1;
        int64_t now = start;
        while (now <= end) {
            while (k < e && steps[k].t <= now) cnt += steps[k++].d;
            if (when[r]) while (f < n_flag && flag_t[f] <= now) active = flag_v[f++];
            int deficit = active && cnt < need[r];
            if (deficit && lapse == NONE) { lapse = now; low = cnt; }
            else if (deficit && cnt < low) low = cnt;
            else if (!deficit && lapse != NONE) {
                if (n_out == max_out) return -1;
                int64_t due = lapse + grace[r];
                o_rule[n_out] = r; o_start[n_out] = lapse; o_end[n_out] = now;
                o_alert[n_out] = due < now ? due : NONE; o_min[n_out] = low; n_out++;
                lapse = NONE;
            }
            int64_t nxt = INT64_MAX;
            if (k < e) nxt = steps[k].t;
            if (when[r] && f < n_flag && flag_t[f] < nxt) nxt = flag_t[f];
            now = nxt;
        }
        if (lapse != NONE) {
            if (n_out == max_out) return -1;
            int64_t due = lapse + grace[r];
            o_rule[n_out] = r; o_start[n_out] = lapse; o_end[n_out] = NONE;
            o_alert[n_out] = due <= end ? due : NONE; o_min[n_out] = low; n_out++;
        }
        s = e;
    }
    free(count); free(fill); free(items); free(last_t); free(in); free(n_in);
    return n_out;
}
