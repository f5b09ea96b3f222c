/* The engine's membership pass compiled: steps 1-3 of engine/_cover.py's docstring in one loop.
 *
 * Optional: built at install by hatch_build.py; without it the engine runs the same pass in
 * numpy (engine/_members.py), which stays the reference. Both must give identical intervals,
 * so the arithmetic below is numpy's, operation for operation (built without fused
 * multiply-add). Pure computation on buffers the engine owns: no I/O, no allocation kept.
 *
 * members(...) for one window [h0, h1) of fixes in (t, seq) order, for sites of point rules
 * without reach: per officer (fixes grouped by a stable counting sort), each fix's rules from
 * the grid, d = |fix - post| + accuracy, "in" if d <= within, kept in the band while linked;
 * runs of "in" become contribution intervals, clipped to the window. Writes the intervals and
 * the new carried memberships (sorted keys officer * n_rules + rule, with their ends), and
 * updates each seen officer's last fix in place. Returns (intervals, carried), or None
 * with nothing changed when the outputs are too small (the caller retries larger).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INF_T ((int64_t)1 << 62)

typedef struct {
    int64_t rule, pend, run_start;
    int mem, cont;
} pair_t;

typedef struct {
    int64_t *off, *rule, *s, *e;
    int64_t n, cap, h0, h1;
} out_t;

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* An interval clipped to the window; empty ones are dropped (as the numpy path does). */
static inline int emit(out_t *o, int64_t off, int64_t rule, int64_t s, int64_t e) {
    s = max64(s, o->h0);
    e = min64(e, o->h1);
    if (s >= e) return 0;
    if (o->n == o->cap) return -1;
    o->off[o->n] = off; o->rule[o->n] = rule; o->s[o->n] = s; o->e[o->n] = e;
    o->n++;
    return 0;
}

/* When a pair's membership ends as the fix's accuracy grows (engine _ends). */
static inline int64_t pair_end(int64_t t, double g, double room, int64_t stale) {
    if (!(g > 0)) return INF_T;
    double steps = floor(1e6 * fmax(room, 0.0) / g);
    if (steps > (double)stale) steps = (double)stale; /* np.minimum; steps is never NaN */
    return t + 1 + (int64_t)steps;
}

#define NBUF 24

static PyObject *members(PyObject *self, PyObject *args) {
    Py_buffer b[NBUF];
    memset(b, 0, sizeof b);
    double x0, y0, cell;
    long long nx, ny, n_rules, stale, h0, h1;
    /* Read: t off x y acc g | carry carry_end | px py within release | items cstart ccount.
       Written: last_t last_xya last_g | out off rule s e | out key end. */
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*w*w*w*w*w*w*w*w*w*dddLLLLLL",
                          &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8],
                          &b[9], &b[10], &b[11], &b[12], &b[13], &b[14], &b[15], &b[16],
                          &b[17], &b[18], &b[19], &b[20], &b[21], &b[22], &b[23], &x0, &y0,
                          &cell, &nx, &ny, &n_rules, &stale, &h0, &h1))
        return NULL;
    PyObject *result = NULL;
    int64_t *cnt = NULL, *order = NULL;
    pair_t *prev = NULL, *cur = NULL;

    const int64_t *t = b[0].buf;
    const int32_t *off = b[1].buf;
    const double *x = b[2].buf, *y = b[3].buf, *acc = b[4].buf, *g = b[5].buf;
    const int64_t *carry = b[6].buf, *carry_end = b[7].buf;
    const double *px = b[8].buf, *py = b[9].buf, *within = b[10].buf, *release = b[11].buf;
    const int64_t *items = b[12].buf, *cstart = b[13].buf, *ccount = b[14].buf;
    int64_t *last_t = b[15].buf;
    double *last_xya = b[16].buf, *last_g = b[17].buf;
    int64_t *key_out = b[22].buf, *end_out = b[23].buf;
    Py_ssize_t n = b[0].len / 8, nc = b[6].len / 8, n_off = b[15].len / 8;
    Py_ssize_t n_items = b[12].len / 8, n_cells = b[13].len / 8;
    Py_ssize_t cap_iv = b[18].len / 8, cap_key = b[22].len / 8;
    out_t out = {b[18].buf, b[19].buf, b[20].buf, b[21].buf, 0, cap_iv, h0, h1};

    int ok = b[1].len == n * 4 && b[2].len == n * 8 && b[3].len == n * 8 && b[4].len == n * 8
             && b[5].len == n * 8 && b[7].len == nc * 8 && b[16].len == n_off * 24
             && b[17].len == n_off * 8 && n_cells == nx * ny && b[14].len == n_cells * 8
             && b[8].len == n_rules * 8 && b[9].len == n_rules * 8
             && b[10].len == n_rules * 8 && b[11].len == n_rules * 8 && n_rules > 0
             && b[19].len == cap_iv * 8 && b[20].len == cap_iv * 8 && b[21].len == cap_iv * 8
             && b[23].len == cap_key * 8;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "members: buffers of inconsistent sizes");
        goto done;
    }
    int64_t widest = 0;
    for (Py_ssize_t c = 0; c < n_cells; c++) {
        if (ccount[c] < 0 || cstart[c] < 0 || cstart[c] + ccount[c] > n_items) {
            PyErr_SetString(PyExc_ValueError, "members: grid cell outside its items");
            goto done;
        }
        if (ccount[c] > widest) widest = ccount[c];
    }
    for (Py_ssize_t k = 0; k < n_items; k++)
        if (items[k] < 0 || items[k] >= n_rules) {
            PyErr_SetString(PyExc_ValueError, "members: grid item is not a rule");
            goto done;
        }
    for (Py_ssize_t i = 0; i < n; i++)
        if (off[i] < 0 || off[i] >= n_off) {
            PyErr_SetString(PyExc_ValueError, "members: officer outside the state");
            goto done;
        }
    for (Py_ssize_t k = 0; k < nc; k++)
        if (carry[k] < 0 || carry[k] / n_rules >= n_off || (k && carry[k] <= carry[k - 1])) {
            PyErr_SetString(PyExc_ValueError, "members: carried keys not sorted or outside");
            goto done;
        }

    /* Fixes grouped by officer, time order kept: a stable counting sort. */
    cnt = calloc((size_t)n_off + 1, sizeof(int64_t));
    order = malloc(((size_t)n + 1) * sizeof(int64_t));
    prev = malloc(((size_t)widest + 1) * sizeof(pair_t));
    cur = malloc(((size_t)widest + 1) * sizeof(pair_t));
    if (!cnt || !order || !prev || !cur) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) cnt[off[i] + 1]++;
    for (Py_ssize_t o = 0; o < n_off; o++) cnt[o + 1] += cnt[o];
    for (Py_ssize_t i = 0; i < n; i++) order[cnt[off[i]]++] = i;
    /* cnt[o] is now the end of officer o's run; its start is cnt[o - 1] (0 for o = 0). */

    Py_ssize_t nk = 0, kc = 0;
    int full = 0;
#define EMIT(o_, r_, s_, e_) do { if (emit(&out, o_, r_, s_, e_)) { full = 1; goto done_loop; } } while (0)
#define KEEP(k_, e_) do { if (nk == cap_key) { full = 1; goto done_loop; } \
                          key_out[nk] = (k_); end_out[nk] = (e_); nk++; } while (0)
    Py_ssize_t run_lo = 0;
    for (Py_ssize_t o = 0; o < n_off; o++) {
        Py_ssize_t lo = run_lo, hi = cnt[o];
        run_lo = hi;
        Py_ssize_t c0 = kc;
        while (kc < nc && carry[kc] / n_rules == o) kc++;
        if (lo == hi && c0 == kc) continue;
        int64_t lt = last_t[o];
        if (lo == hi) {
            /* Not seen this window: its carried memberships go on until stale. */
            for (Py_ssize_t k = c0; k < kc; k++) {
                int64_t e = min64(lt + stale, carry_end[k]);
                EMIT(o, carry[k] % n_rules, lt, e);
                if (e > h1) KEEP(carry[k], carry_end[k]);
            }
            continue;
        }
        int64_t first_t = t[order[lo]];
        for (Py_ssize_t k = c0; k < kc; k++)
            EMIT(o, carry[k] % n_rules, lt, min64(min64(lt + stale, first_t), carry_end[k]));
        int np_ = 0;
        int64_t pt = lt;
        for (Py_ssize_t j = lo; j < hi; j++) {
            Py_ssize_t i = order[j];
            int64_t tj = t[i];
            int linked = tj - pt < stale;
            int nn = 0;
            double fx = floor((x[i] - x0) / cell), fy = floor((y[i] - y0) / cell);
            if (fx >= 0 && fx < (double)nx && fy >= 0 && fy < (double)ny) {
                int64_t c = (int64_t)fy * nx + (int64_t)fx;
                int q = 0; /* merge pointer into prev (both ascending by rule) */
                Py_ssize_t kq = c0; /* and into the carried keys, at the first fix */
                for (int64_t k = cstart[c]; k < cstart[c] + ccount[c]; k++) {
                    int64_t r = items[k];
                    double dx = x[i] - px[r], dy = y[i] - py[r];
                    double d = sqrt(dx * dx + dy * dy) + acc[i];
                    if (!(d <= release[r])) continue;
                    pair_t *p = &cur[nn++];
                    p->rule = r;
                    p->pend = pair_end(tj, g[i], release[r] - d, stale);
                    p->cont = 0;
                    int in = d <= within[r];
                    if (j == lo) {
                        int carried = 0;
                        if (linked && !in) {
                            int64_t key = o * n_rules + r;
                            while (kq < kc && carry[kq] < key) kq++;
                            carried = kq < kc && carry[kq] == key && carry_end[kq] > tj;
                        }
                        p->mem = in || carried;
                        p->run_start = tj;
                    } else {
                        while (q < np_ && prev[q].rule < r) q++;
                        int lp = linked && q < np_ && prev[q].rule == r && prev[q].pend > tj;
                        int cont = lp && prev[q].mem;
                        p->mem = in || cont;
                        p->run_start = cont ? prev[q].run_start : tj;
                        if (cont) prev[q].cont = 1;
                    }
                }
            }
            /* Runs that do not go on to this fix end at it (or when stale, or grown out). */
            for (int q = 0; q < np_; q++)
                if (prev[q].mem && !prev[q].cont)
                    EMIT(o, prev[q].rule, prev[q].run_start,
                         min64(min64(tj, pt + stale), prev[q].pend));
            pair_t *tmp = prev; prev = cur; cur = tmp;
            np_ = nn;
            pt = tj;
        }
        for (int q = 0; q < np_; q++)
            if (prev[q].mem) {
                int64_t e = min64(pt + stale, prev[q].pend);
                EMIT(o, prev[q].rule, prev[q].run_start, e);
                /* Carried on unless it can no longer matter (stale or out before h1). */
                if (e > h1) KEEP(o * n_rules + prev[q].rule, prev[q].pend);
            }
    }
done_loop:
    if (full) {
        /* Nothing was changed yet: the caller retries with larger outputs. */
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    /* Each seen officer's last fix, now that the window went through. */
    run_lo = 0;
    for (Py_ssize_t o = 0; o < n_off; o++) {
        Py_ssize_t lo = run_lo, hi = cnt[o];
        run_lo = hi;
        if (lo == hi) continue;
        Py_ssize_t il = order[hi - 1];
        last_t[o] = t[il];
        last_xya[3 * o] = x[il]; last_xya[3 * o + 1] = y[il]; last_xya[3 * o + 2] = acc[il];
        last_g[o] = g[il];
    }
    result = Py_BuildValue("nn", (Py_ssize_t)out.n, nk);
done:
    free(cnt); free(order); free(prev); free(cur);
    for (int k = 0; k < NBUF; k++)
        if (b[k].obj) PyBuffer_Release(&b[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"members", members, METH_VARARGS, "The membership pass over one window (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ckernel", "The engine's membership pass, compiled.", -1, methods,
};

/* Bumped with every change of members()'s arguments or meaning: engine/_native.py uses
   the module only if it says the version it expects (a stale build falls back to numpy). */
#define KERNEL_VERSION 1

PyMODINIT_FUNC PyInit__ckernel(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "VERSION", KERNEL_VERSION)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
