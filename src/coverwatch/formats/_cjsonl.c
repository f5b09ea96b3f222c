/* JSONL fix lines read straight into columns: the replay's usual line, parsed in one pass.
 *
 * Optional: built at install by hatch_build.py; without it (or on any block it declines) the
 * reader takes its pyarrow fast path or the exact per-line path (formats/eventfiles.py), which
 * stay the reference. This pass only accepts what it can vouch for: a line that is exactly an
 * object of the keys t, kind ("fix"), officer, x, y, lat, lon, accuracy_m, each once, whose
 * strings are printable ASCII without escapes and whose numbers are plain JSON numbers it
 * converts exactly (below). Any other line (a control event, an unknown key, an escape, a
 * byte that is not printable ASCII, null, a nested value, a number it does not convert, a fix
 * breaking a rule) is handed back by position for the exact path's per-line rules; so
 * NaN, Infinity, bytes that are not UTF-8 and deep nesting never pass here. The whole block is
 * declined (None) if a line is blank or longer than the line limit.
 *
 * fix_lines(block, max_line, first_line, has_origin) -> None or
 *   (lines, n, cap, cols, t_tokens, t_text, names, name_first, others)
 * cols: a bytearray of columns of `cap` values, the first n of each used: seq (int64, the
 * line's number), the t token's code and the officer's code (int32 each), x, y, lat, lon,
 * accuracy (double; NaN where not given, accuracy 0); t_tokens: the distinct time tokens (bytes) in first
 * seen order, t_text[i] true if token i was a string (its text) else a number (its JSON);
 * names: the distinct officers (str) in first-seen order, name_first their first line index;
 * others: bytes of int64 triples (line index, start, end) of the lines left to the exact path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VERSION 1

enum { K_T, K_KIND, K_OFFICER, K_X, K_Y, K_LAT, K_LON, K_ACC, NKEYS };

typedef struct {
    char *p;
    Py_ssize_t n, cap; /* bytes */
} buf_t;

static int put(buf_t *b, const void *v, Py_ssize_t size) {
    if (b->n + size > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap * 2 : 1 << 16;
        while (cap < b->n + size) cap *= 2;
        char *p = realloc(b->p, (size_t)cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, v, (size_t)size);
    b->n += size;
    return 0;
}

/* Distinct byte strings (spans of the block) -> dense codes in first-seen order. */
typedef struct {
    int64_t *slot; /* code + 1, 0 empty */
    Py_ssize_t cap, n;
    Py_ssize_t *start, *len;
    Py_ssize_t room;
} table_t;

static uint64_t hash(const unsigned char *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static int grow(table_t *t, const unsigned char *base) {
    Py_ssize_t cap = t->cap ? t->cap * 2 : 1024;
    int64_t *slot = calloc((size_t)cap, sizeof(int64_t));
    if (!slot) return -1;
    for (Py_ssize_t c = 0; c < t->n; c++) {
        uint64_t i = hash(base + t->start[c], t->len[c]) & (uint64_t)(cap - 1);
        while (slot[i]) i = (i + 1) & (uint64_t)(cap - 1);
        slot[i] = c + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

/* The code of span [s, s + n) of base; -1 out of memory. *fresh set if it is new. */
static int64_t intern(table_t *t, const unsigned char *base, Py_ssize_t s, Py_ssize_t n, int *fresh) {
    if (2 * (t->n + 1) > t->cap && grow(t, base)) return -1;
    uint64_t i = hash(base + s, n) & (uint64_t)(t->cap - 1);
    int64_t c;
    while ((c = t->slot[i])) {
        c--;
        if (t->len[c] == n && !memcmp(base + t->start[c], base + s, (size_t)n)) {
            *fresh = 0;
            return c;
        }
        i = (i + 1) & (uint64_t)(t->cap - 1);
    }
    if (t->n == t->room) {
        Py_ssize_t room = t->room ? t->room * 2 : 1024;
        Py_ssize_t *st = realloc(t->start, (size_t)room * sizeof(Py_ssize_t));
        if (!st) return -1;
        t->start = st;
        Py_ssize_t *ln = realloc(t->len, (size_t)room * sizeof(Py_ssize_t));
        if (!ln) return -1;
        t->len = ln;
        t->room = room;
    }
    t->start[t->n] = s;
    t->len[t->n] = n;
    t->slot[i] = t->n + 1;
    *fresh = 1;
    return t->n++;
}

static void table_free(table_t *t) {
    free(t->slot);
    free(t->start);
    free(t->len);
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number at *pp (strict grammar). Returns 1 and the value in *out when it converts
 * exactly as a correctly rounded parse does (float() or orjson): at most 15 significant
 * digits and a power of ten up to 22, so digits and power are exact doubles and one IEEE
 * division or product rounds once (Clinger's fast path); an integer's -0 is +0.0, as
 * float(int) gives. Returns 0 for a valid number it does not convert (the exact path does),
 * -1 if not a JSON number. *pp is moved past the token either way (unless -1). */
static int number(const unsigned char **pp, const unsigned char *e, double *out) {
    const unsigned char *p = *pp;
    int neg = 0, digits = 0, frac = 0, is_int = 1;
    uint64_t m = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= e || *p < '0' || *p > '9') return -1;
    if (*p == '0') {
        p++;
        if (p < e && *p >= '0' && *p <= '9') return -1; /* no leading zeros in JSON */
    } else {
        while (p < e && *p >= '0' && *p <= '9') {
            m = m * 10 + (uint64_t)(*p - '0');
            digits++;
            if (digits > 15) break;
            p++;
        }
    }
    int ok = digits <= 15;
    while (p < e && *p >= '0' && *p <= '9') p++; /* past 15 digits: not converted here */
    if (p < e && *p == '.') {
        is_int = 0;
        p++;
        if (p >= e || *p < '0' || *p > '9') return -1;
        while (p < e && *p >= '0' && *p <= '9') {
            if (ok) {
                if (m == 0 && *p == '0') {
                    frac++; /* leading zeros of 0.00x: no significant digit yet */
                } else {
                    m = m * 10 + (uint64_t)(*p - '0');
                    digits++;
                    frac++;
                    if (digits > 15) ok = 0;
                }
            }
            p++;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        ok = 0; /* exponents: left to the exact path */
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return -1;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    *pp = p;
    if (!ok || frac > 22) return 0;
    double v = (double)m;
    if (frac) v = v / POW10[frac];
    if (neg) v = is_int && m == 0 ? 0.0 : -v;
    *out = v;
    return 1;
}

/* The length of each key with its closing quote. */
static const Py_ssize_t KEY_LEN[NKEYS] = {2, 5, 8, 2, 2, 4, 4, 11};

/* Bytes a string may hold here: printable ASCII but the quote and the backslash. */
static unsigned char PLAIN[256];

#define WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\r')

/* The line at p (e: the end of the block): where it ends (its newline, or e) and its values
   if it is a fix this pass vouches for, else NULL. A newline is never inside a token it takes. */
typedef struct {
    Py_ssize_t t_s, t_n, who_s, who_n;
    int t_text;
    double v[NKEYS];
} line_t;

static const unsigned char *fix_line(const unsigned char *base, const unsigned char *p,
                                     const unsigned char *e, int has_origin, line_t *L) {
    unsigned seen = 0;
    if (p >= e || *p != '{') return NULL;
    p++;
    for (;;) {
        while (p < e && WS(*p)) p++;
        if (p >= e || *p != '"') return NULL;
        p++;
        /* A key is one of the eight, closing quote included, or the line is not ours. */
        int key;
        Py_ssize_t room = e - p;
#define IS(word) (room >= (Py_ssize_t)sizeof(word) - 1 && !memcmp(p, word, sizeof(word) - 1))
        switch (room ? *p : 0) {
        case 't': key = IS("t\"") ? K_T : -1; break;
        case 'k': key = IS("kind\"") ? K_KIND : -1; break;
        case 'o': key = IS("officer\"") ? K_OFFICER : -1; break;
        case 'x': key = IS("x\"") ? K_X : -1; break;
        case 'y': key = IS("y\"") ? K_Y : -1; break;
        case 'l': key = IS("lat\"") ? K_LAT : IS("lon\"") ? K_LON : -1; break;
        case 'a': key = IS("accuracy_m\"") ? K_ACC : -1; break;
        default: key = -1;
        }
#undef IS
        if (key < 0) return NULL;
        p += KEY_LEN[key];
        if (seen & (1u << key)) return NULL;
        seen |= 1u << key;
        while (p < e && WS(*p)) p++;
        if (p >= e || *p != ':') return NULL;
        p++;
        while (p < e && WS(*p)) p++;
        if (p >= e) return NULL;
        if (*p == '"') {
            const unsigned char *s = ++p;
            while (p < e && PLAIN[*p]) p++;
            if (p >= e || *p != '"') return NULL; /* an escape, a byte not printable ASCII */
            Py_ssize_t n = p - s;
            p++;
            if (key == K_KIND) {
                if (n != 3 || memcmp(s, "fix", 3)) return NULL;
            } else if (key == K_OFFICER) {
                if (n < 1 || n > 200) return NULL; /* records.MAX_NAME_CHARS */
                L->who_s = s - base;
                L->who_n = n;
            } else if (key == K_T) {
                L->t_s = s - base;
                L->t_n = n;
                L->t_text = 1;
            } else {
                return NULL; /* a number as text: the exact path refuses it */
            }
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            const unsigned char *s = p;
            double v = 0.0;
            int got = number(&p, e, &v);
            if (got < 0) return NULL;
            if (key == K_T) {
                L->t_s = s - base;
                L->t_n = p - s;
                L->t_text = 0;
            } else if (key == K_KIND || key == K_OFFICER || !got) {
                return NULL;
            } else {
                L->v[key] = v;
            }
        } else {
            return NULL; /* null, true, false, a list or an object */
        }
        while (p < e && WS(*p)) p++;
        if (p >= e) return NULL;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '}') return NULL;
        p++;
        break;
    }
    while (p < e && WS(*p)) p++;
    if (p < e && *p != '\n') return NULL;
    /* The fix rules (records.check_row), else the exact path decides. */
    const unsigned need = (1u << K_T) | (1u << K_KIND) | (1u << K_OFFICER);
    if ((seen & need) != need) return NULL;
    const unsigned xy = (1u << K_X) | (1u << K_Y), ll = (1u << K_LAT) | (1u << K_LON);
    if ((seen & (xy | ll)) == xy) {
        L->v[K_LAT] = L->v[K_LON] = NAN;
    } else if ((seen & (xy | ll)) == ll) {
        if (!has_origin || !(L->v[K_LAT] >= -90.0 && L->v[K_LAT] <= 90.0) ||
            !(L->v[K_LON] >= -180.0 && L->v[K_LON] <= 180.0))
            return NULL;
        L->v[K_X] = L->v[K_Y] = NAN;
    } else {
        return NULL;
    }
    if (!(seen & (1u << K_ACC))) L->v[K_ACC] = 0.0;
    else if (L->v[K_ACC] < 0) return NULL;
    return p;
}

/* The shortest fix line this pass accepts, {"t":0,"kind":"fix","officer":"a","x":0,"y":0}
   and its newline: a bound on the fix rows of a block. */
#define MIN_FIX_LINE 45

static PyObject *fix_lines(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer blk;
    Py_ssize_t max_line;
    long long first_line;
    int has_origin;
    if (!PyArg_ParseTuple(args, "y*nLp", &blk, &max_line, &first_line, &has_origin)) return NULL;
    const unsigned char *base = blk.buf, *end = base + blk.len;
    /* Column-major, `cap` rows each: seq, t code and officer code, x, y, lat, lon, accuracy. */
    Py_ssize_t cap = blk.len / MIN_FIX_LINE + 1;
    PyObject *colobj = PyByteArray_FromStringAndSize(NULL, cap * 7 * 8);
    if (!colobj) {
        PyBuffer_Release(&blk);
        return NULL;
    }
    int64_t *seq = (int64_t *)PyByteArray_AS_STRING(colobj);
    int32_t *tcode = (int32_t *)(seq + cap), *wcode = tcode + cap;
    double *col = (double *)(seq + 2 * cap); /* x, y, lat, lon, accuracy: col + k * cap */
    buf_t others = {0}, first = {0}, t_text = {0};
    table_t times = {0}, who = {0};
    PyObject *result = NULL;
    int declined = 0, nomem = 0;
    int64_t line = 0;
    Py_ssize_t nfix = 0;
    Py_ssize_t last_t = -1, last_tn = 0; /* the previous time token: lines of a second share it */
    int64_t last_tc = 0;
    int last_text = 0;
    const unsigned char *p = base;
    Py_BEGIN_ALLOW_THREADS
    while (p < end) {
        line_t L;
        L.t_s = L.t_n = L.who_s = L.who_n = 0; /* set whenever fix_line takes the line */
        L.t_text = 0;
        const unsigned char *e = fix_line(base, p, end, has_origin, &L);
        if (e && e - p <= max_line && nfix < cap) {
            int64_t tc;
            int fresh;
            if (last_t >= 0 && L.t_n == last_tn && L.t_text == last_text &&
                !memcmp(base + L.t_s, base + last_t, (size_t)L.t_n)) {
                tc = last_tc;
            } else {
                /* Text and number tokens apart: the quotes are not in the span. */
                Py_ssize_t s = L.t_text ? L.t_s - 1 : L.t_s, n = L.t_text ? L.t_n + 2 : L.t_n;
                tc = intern(&times, base, s, n, &fresh);
                if (tc < 0) { nomem = 1; break; }
                if (fresh) {
                    char c = (char)L.t_text;
                    if (put(&t_text, &c, 1)) { nomem = 1; break; }
                }
                last_t = L.t_s;
                last_tn = L.t_n;
                last_tc = tc;
                last_text = L.t_text;
            }
            int64_t wc = intern(&who, base, L.who_s, L.who_n, &fresh);
            if (wc < 0) { nomem = 1; break; }
            if (fresh && put(&first, &line, 8)) { nomem = 1; break; }
            seq[nfix] = first_line + line;
            tcode[nfix] = (int32_t)tc;
            wcode[nfix] = (int32_t)wc;
            col[nfix] = L.v[K_X];
            col[cap + nfix] = L.v[K_Y];
            col[2 * cap + nfix] = L.v[K_LAT];
            col[3 * cap + nfix] = L.v[K_LON];
            col[4 * cap + nfix] = L.v[K_ACC];
            nfix++;
        } else {
            const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
            e = nl ? nl : end;
            if (e - p > max_line || e == p) {
                declined = 1; /* over the limit, or blank: the block's exact path names it */
                break;
            }
            int64_t o[3] = {line, p - base, e - base};
            if (put(&others, o, sizeof o)) { nomem = 1; break; }
        }
        line++;
        p = e < end ? e + 1 : end;
    }
    Py_END_ALLOW_THREADS
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    if (declined) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *tok = PyList_New(times.n), *txt = NULL, *names = NULL, *fl = NULL, *oth = NULL;
    if (!tok) goto done;
    for (Py_ssize_t i = 0; i < times.n; i++) {
        Py_ssize_t s = times.start[i], n = times.len[i];
        if (t_text.p[i]) { s++; n -= 2; }
        PyObject *b = PyBytes_FromStringAndSize((const char *)base + s, n);
        if (!b) goto fail;
        PyList_SET_ITEM(tok, i, b);
    }
    txt = PyBytes_FromStringAndSize(t_text.p, times.n);
    names = PyList_New(who.n);
    if (!txt || !names) goto fail;
    for (Py_ssize_t i = 0; i < who.n; i++) {
        PyObject *u = PyUnicode_DecodeASCII((const char *)base + who.start[i], who.len[i], NULL);
        if (!u) goto fail;
        PyList_SET_ITEM(names, i, u);
    }
    fl = PyBytes_FromStringAndSize(first.p, first.n);
    oth = PyBytes_FromStringAndSize(others.p, others.n);
    if (!fl || !oth) goto fail;
    result = Py_BuildValue("(LnnONNNNN)", (long long)line, nfix, cap, colobj, tok, txt, names,
                           fl, oth);
    goto done;
fail:
    Py_XDECREF(tok);
    Py_XDECREF(txt);
    Py_XDECREF(names);
    Py_XDECREF(fl);
    Py_XDECREF(oth);
done:
    Py_DECREF(colobj);
    free(others.p);
    free(first.p);
    free(t_text.p);
    table_free(&times);
    table_free(&who);
    PyBuffer_Release(&blk);
    return result;
}

static PyMethodDef methods[] = {
    {"fix_lines", fix_lines, METH_VARARGS, "A JSONL block's fix lines as columns (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cjsonl", "JSONL fix lines read into columns, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__cjsonl(void) {
    for (int c = 0x20; c <= 0x7e; c++) PLAIN[c] = c != '"' && c != '\\';
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "VERSION", VERSION)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
