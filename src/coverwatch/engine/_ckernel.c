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
 * updates each seen officer's last fix in place. With `eligible` (no duty change in the
 * window), only the parts that count, and each rule's count at h0 apart: an interval
 * spanning the window is only that count. Returns (intervals, carried), or None
 * with nothing changed when the outputs are too small (the caller retries larger).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INF_T ((int64_t)1 << 62)

#define K 8 /* memberships per officer at once; more: the window goes to numpy instead */

typedef struct {
    int64_t pend, run_start;
    int32_t rule, cont;
} pair_t;

/* An officer's state in the window: everything a fix reads and writes in one cache line
   (the header and the first membership). 50 000 officers' states are far out of cache; with
   all K memberships inline a state took four lines, so four times the pages and lines to
   fetch per pass over officers. The other memberships, rarely any, are in a separate area.
   Memberships by rule, at the previous fix. */
typedef struct {
    int64_t pt;     /* time of the previous fix in the window */
    int64_t last_i; /* index of the officer's latest fix in the window */
    int64_t c_lo;   /* its carried keys: from c_lo, c_n of them */
    int32_t c_n, n;
    pair_t in0;     /* membership 0; 1 .. K-1 in the officer's row of the overflow area */
} officer_t;

#define LINE 64
_Static_assert(sizeof(officer_t) <= LINE, "an officer's state must fit one cache line");
/* The scratch per officer (the engine's, kept across calls so its pages stay mapped): the
   state, its overflow row, and a line more in all to align the states to cache lines. */
#define STATE_BYTES ((Py_ssize_t)((sizeof(officer_t) + LINE - 1) / LINE * LINE))
#define EXTRA_BYTES ((Py_ssize_t)((K - 1) * sizeof(pair_t)))
#define SCRATCH_BYTES (STATE_BYTES + EXTRA_BYTES + 1)

typedef struct {
    int64_t *off, *rule, *s, *e;
    int64_t n, cap, h0, h1;
    /* With `eligible`: only the parts counting (on duty, capable), and those from h0 on
       only counted per rule in h0count (written only if they also end before h1). */
    int eligible;
    const uint8_t *on, *caps;
    const int64_t *rule_cap;
    int64_t ncols, *h0count;
} out_t;

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* An interval clipped to the window; empty ones are dropped (as the numpy path does). */
/* key / n for the keys officer * n_rules + rule: a double's quotient, corrected (exact below
   2^52, where a key and its quotient are held exactly and the estimate is off by one at most);
   a hardware 64-bit division per key cost more than the rest of the key's work. */
static inline int64_t key_div(int64_t key, int64_t n, double inv) {
    if (key >= ((int64_t)1 << 52)) return key / n;
    int64_t q = (int64_t)((double)key * inv), r = key - q * n;
    if (r < 0) q--;
    else if (r >= n) q++;
    return q;
}

static inline __attribute__((always_inline)) int emit(out_t *o, int64_t off, int64_t rule, int64_t s, int64_t e) {
    s = max64(s, o->h0);
    e = min64(e, o->h1);
    if (s >= e) return 0;
    if (o->eligible) {
        if (!o->on[off] || !o->caps[off * o->ncols + o->rule_cap[rule]]) return 0;
        if (s == o->h0) {
            o->h0count[rule]++;
            if (e == o->h1) return 0;
        }
    }
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

#define NBUF 30

static PyObject *members(PyObject *self, PyObject *args) {
    Py_buffer b[NBUF];
    memset(b, 0, sizeof b);
    double x0, y0, cell;
    long long nx, ny, n_rules, stale, h0, h1;
    int eligible;
    /* Read: t off x y acc g | carry carry_end | px py within release | items cstart ccount.
       Written: last_t last_xya last_g | out off rule s e | out key end.
       Read: on caps rule_cap; written: h0count | scratch: officers seen. */
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*w*w*w*w*w*w*w*w*w*y*y*y*w*w*w*dddLLLLLLi",
                          &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8],
                          &b[9], &b[10], &b[11], &b[12], &b[13], &b[14], &b[15], &b[16],
                          &b[17], &b[18], &b[19], &b[20], &b[21], &b[22], &b[23], &b[24], &b[25],
                          &b[26], &b[27], &b[28], &b[29], &x0, &y0, &cell, &nx, &ny, &n_rules,
                          &stale, &h0, &h1, &eligible))
        return NULL;
    PyObject *result = NULL;

    const int64_t *t = b[0].buf;
    const int32_t *off = b[1].buf;
    const double *x = b[2].buf, *y = b[3].buf, *acc = b[4].buf, *g = b[5].buf;
    const int64_t *carry = b[6].buf, *carry_end = b[7].buf;
    const double *px = b[8].buf, *py = b[9].buf, *within = b[10].buf, *release = b[11].buf;
    const int64_t *items = b[12].buf, *cstart = b[13].buf, *ccount = b[14].buf;
    int64_t *last_t = b[15].buf;
    double *last_xya = b[16].buf, *last_g = b[17].buf;
    int64_t *key_out = b[22].buf, *end_out = b[23].buf;
    /* The states at the first cache line boundary in the scratch, STATE_BYTES apart. */
    char *st_base = (char *)(((uintptr_t)b[28].buf + LINE - 1) & ~(uintptr_t)(LINE - 1));
#define ST(o_) ((officer_t *)(st_base + (o_) * STATE_BYTES))
    uint8_t *seen = b[29].buf;
    Py_ssize_t n = b[0].len / 8, nc = b[6].len / 8, n_off = b[15].len / 8;
    /* The overflow rows after the states; membership q of officer o_ (state S_). */
    pair_t *extra = (pair_t *)(st_base + n_off * STATE_BYTES);
#define IN(S_, o_, q_) (*((q_) ? &extra[(o_) * (K - 1) + (q_) - 1] : &(S_)->in0))
    Py_ssize_t n_items = b[12].len / 8, n_cells = b[13].len / 8;
    Py_ssize_t cap_iv = b[18].len / 8, cap_key = b[22].len / 8;
    int64_t ncols = n_off ? b[25].len / n_off : 0;
    const int64_t *rule_cap = b[26].buf;
    out_t out = {b[18].buf, b[19].buf, b[20].buf, b[21].buf, 0, cap_iv, h0, h1, eligible,
                 b[24].buf, b[25].buf, rule_cap, ncols, b[27].buf};

    int ok = b[1].len == n * 4 && b[2].len == n * 8 && b[3].len == n * 8 && b[4].len == n * 8
             && b[5].len == n * 8 && b[7].len == nc * 8 && b[16].len == n_off * 24
             && b[17].len == n_off * 8 && n_cells == nx * ny && b[14].len == n_cells * 8
             && b[8].len == n_rules * 8 && b[9].len == n_rules * 8
             && b[10].len == n_rules * 8 && b[11].len == n_rules * 8 && n_rules > 0
             && b[19].len == cap_iv * 8 && b[20].len == cap_iv * 8 && b[21].len == cap_iv * 8
             && b[23].len == cap_key * 8 && b[24].len == n_off && ncols > 0
             && b[25].len == n_off * ncols && b[26].len == n_rules * 8
             && b[27].len == n_rules * 8
             && b[28].len >= n_off * (STATE_BYTES + EXTRA_BYTES) + LINE && b[29].len >= n_off;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "members: buffers of inconsistent sizes");
        goto done;
    }
    for (Py_ssize_t c = 0; c < n_cells; c++)
        if (ccount[c] < 0 || cstart[c] < 0 || cstart[c] + ccount[c] > n_items) {
            PyErr_SetString(PyExc_ValueError, "members: grid cell outside its items");
            goto done;
        }
    for (Py_ssize_t r = 0; r < n_rules; r++)
        if (rule_cap[r] < 0 || rule_cap[r] >= ncols) {
            PyErr_SetString(PyExc_ValueError, "members: capability column outside the table");
            goto done;
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
    double inv_rules = 1.0 / (double)n_rules;
    for (Py_ssize_t k = 0; k < nc; k++)
        if (carry[k] < 0 || carry[k] >= (int64_t)n_off * n_rules || (k && carry[k] <= carry[k - 1])) {
            PyErr_SetString(PyExc_ValueError, "members: carried keys not sorted or outside");
            goto done;
        }

    /* seen: 0 between calls; 1 seen in this window; 2 carries memberships, not seen yet. */
    for (Py_ssize_t k = 0; k < nc; k++) {
        int64_t o = key_div(carry[k], n_rules, inv_rules);
        officer_t *S = ST(o);
        if (seen[o] != 2) { seen[o] = 2; S->c_lo = k; S->c_n = 0; }
        S->c_n++;
    }
    Py_ssize_t nk = 0, left = nc, live = 0;
    int status = 0; /* 1: outputs full; 2: an officer in more than K rules at once */
#define EMIT(o_, r_, s_, e_) do { if (emit(&out, o_, r_, s_, e_)) { status = 1; goto walked; } } while (0)
#define KEEP(k_, e_) do { if (nk == cap_key) { status = 1; goto walked; } \
                          key_out[nk] = (k_); end_out[nk] = (e_); nk++; } while (0)

    /* The fixes in time order, each officer's state as it goes. */
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t o = off[i];
        officer_t *S = ST(o);
        int64_t tj = t[i], pt;
        int first = seen[o] != 1;
        pair_t cur[K];
        int nn = 0;
        if (first) {
            if (seen[o] != 2) { S->c_n = 0; S->c_lo = 0; }
            else left -= S->c_n;
            seen[o] = 1;
            pt = last_t[o];
            S->n = 0;
            /* Carried memberships count from the last fix until this one (or stale/out). */
            for (Py_ssize_t k = S->c_lo; k < S->c_lo + S->c_n; k++)
                EMIT(o, carry[k] - o * n_rules, pt, min64(min64(pt + stale, tj), carry_end[k]));
        } else {
            pt = S->pt;
        }
        int linked = tj - pt < stale;
        /* numpy's floor((x - x0) / cell) in [0, nx): for v >= 0, floor(v) < nx iff v < nx,
           and the floor is the truncation (NaN fails every test, as in numpy). */
        double fx = (x[i] - x0) / cell, fy = (y[i] - y0) / cell;
        if (fx >= 0 && fx < (double)nx && fy >= 0 && fy < (double)ny) {
            int64_t c = (int64_t)fy * nx + (int64_t)fx;
            int q = 0;                       /* merge pointer into the memberships, by rule */
            Py_ssize_t kq = S->c_lo, kend = S->c_lo + S->c_n; /* into the carry, at the first */
            for (int64_t k = cstart[c]; k < cstart[c] + ccount[c]; k++) {
                int64_t r = items[k];
                double dx = x[i] - px[r], dy = y[i] - py[r];
                double d = sqrt(dx * dx + dy * dy) + acc[i];
                if (!(d <= release[r])) continue;
                int in = d <= within[r], mem, cont = 0;
                if (first) {
                    int carried = 0;
                    if (linked && !in) {
                        int64_t key = o * n_rules + r;
                        while (kq < kend && carry[kq] < key) kq++;
                        carried = kq < kend && carry[kq] == key && carry_end[kq] > tj;
                    }
                    mem = in || carried;
                } else {
                    /* Linked to the previous fix's pair if that was in and still holds. */
                    while (q < S->n && IN(S, o, q).rule < r) q++;
                    cont = linked && q < S->n && IN(S, o, q).rule == r && IN(S, o, q).pend > tj;
                    mem = in || cont;
                }
                if (!mem) continue;
                if (nn == K) { status = 2; goto walked; }
                cur[nn].rule = (int32_t)r;
                cur[nn].pend = pair_end(tj, g[i], release[r] - d, stale);
                cur[nn].run_start = cont ? IN(S, o, q).run_start : tj;
                cur[nn].cont = 0;
                if (cont) IN(S, o, q).cont = 1;
                nn++;
            }
        }
        /* Runs that do not go on to this fix end at it (or when stale, or grown out). */
        for (int q = 0; q < S->n; q++) {
            pair_t *P = &IN(S, o, q);
            if (!P->cont)
                EMIT(o, P->rule, P->run_start, min64(min64(tj, pt + stale), P->pend));
        }
        live += nn - S->n;
        /* Usually none or one: copied inline, not by a call into libc's memcpy per fix. */
        if (nn >= 1) S->in0 = cur[0];
        if (nn > 1) memcpy(&extra[o * (K - 1)], cur + 1, (size_t)(nn - 1) * sizeof(pair_t));
        S->n = nn;
        S->pt = tj;
        S->last_i = i;
    }
    /* The pass below writes the engine's state as it goes: it must not run out of room,
       so the room for what it can write is checked first (`left` carried memberships of
       officers not seen, `live` memberships at the last fixes of those seen). */
    if (out.n + left + live > out.cap || left + live > cap_key) { status = 1; goto walked; }
    /* Each officer in order: the runs still going, the new carry (sorted keys), and the
       last fix of each seen officer; the marks cleared. */
    for (Py_ssize_t o = 0; o < n_off; o++) {
        if (!seen[o]) continue;
        officer_t *S = ST(o);
        if (seen[o] == 2) { /* not seen: its carried memberships go on until stale */
            int64_t lt = last_t[o];
            for (Py_ssize_t k = S->c_lo; k < S->c_lo + S->c_n; k++) {
                int64_t e = min64(lt + stale, carry_end[k]);
                EMIT(o, carry[k] - o * n_rules, lt, e);
                if (e > h1) KEEP(carry[k], carry_end[k]);
            }
            seen[o] = 0;
            continue;
        }
        for (int q = 0; q < S->n; q++) {
            pair_t *P = &IN(S, o, q);
            int64_t e = min64(S->pt + stale, P->pend);
            EMIT(o, P->rule, P->run_start, e);
            /* Carried on unless it can no longer matter (stale or out before h1). */
            if (e > h1) KEEP(o * n_rules + P->rule, P->pend);
        }
        Py_ssize_t il = S->last_i;
        last_t[o] = t[il];
        last_xya[3 * o] = x[il]; last_xya[3 * o + 1] = y[il]; last_xya[3 * o + 2] = acc[il];
        last_g[o] = g[il];
        seen[o] = 0;
    }
walked:
    /* A window that did not go through changes nothing: only the marks are cleared. */
    if (status != 0)
        memset(seen, 0, (size_t)n_off);
    if (status == 0)
        result = Py_BuildValue("nn", (Py_ssize_t)out.n, nk);
    else /* nothing was changed: -1, retry with larger outputs; -2, use numpy */
        result = PyLong_FromLong(-status);
done:
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
#define KERNEL_VERSION 6

PyMODINIT_FUNC PyInit__ckernel(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "VERSION", KERNEL_VERSION)
              || PyModule_AddIntConstant(m, "OFFICER_BYTES", (long)SCRATCH_BYTES))) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
