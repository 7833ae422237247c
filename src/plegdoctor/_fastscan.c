/* The candidate loop of the log scanner (plegdoctor.parsers.logs.scanner), compiled.

   scan_matches() does what LineScanner._candidates does after its first lines: it walks
   the sorted needle matches of one region of a chunk, delivers each candidate line once
   (smallest tag) to on_line, asks follow() after each, and reads relist ticks itself: line
   number, the klog stamp after the first "]: " (or at the line start), the minute epoch
   from the handler's cache, straight into the handler's RelistSeries. Anything that is not
   a plain tick (a stamp the cache does not know, a long interval, an open multi-line value)
   goes to the same Python methods the pure-Python path calls, after the handler's state
   (last_tick_ts, last_tick_text) has been brought up to date, so both paths give the same
   evidence; tests/test_fastscan.py checks that on generated and mangled logs.

   Every offset is checked against the buffer: matches come from Python and are not
   trusted. No allocation but Python objects; no state kept between calls. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TAG_BITS 5
#define TAG_MASK ((1 << TAG_BITS) - 1)

static PyObject *s_multi, *s_last_tick_ts, *s_last_tick_text, *s_add_tick, *s_first_tick_text, *s_minute_cache,
    *s_ts_append, *s_src_append, *s_line_append, *s_src_id, *s_series, *s_keep;

/* Newlines in p[0:n]: eight bytes at a time (an exact "is zero" test per byte, the high
   bits summed by one multiplication: no popcount instruction needed). */
static Py_ssize_t
count_nl(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t c = 0;
    const uint64_t ones7 = 0x7f7f7f7f7f7f7f7fULL, nl = 0x0a0a0a0a0a0a0a0aULL, lsb = 0x0101010101010101ULL;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= nl;                                /* newline bytes -> 0 */
        uint64_t t = ((w & ones7) + ones7) | w; /* high bit set where the byte is not 0 */
        c += (Py_ssize_t)(((~t >> 7) & lsb) * lsb >> 56);
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        c += *p++ == '\n';
    return c;
}

/* Index of the first '\n' in buf[lo:hi] (with `last`: of the last one), or -1. */
static Py_ssize_t
newline_in(const unsigned char *buf, Py_ssize_t lo, Py_ssize_t hi, int last)
{
    if (hi <= lo)
        return -1;
    const unsigned char *q = last ? memrchr(buf + lo, '\n', (size_t)(hi - lo)) : memchr(buf + lo, '\n', (size_t)(hi - lo));
    return q ? q - buf : -1;
}
#define find_nl(buf, lo, hi) newline_in(buf, lo, hi, 0)
#define rfind_nl(buf, lo, hi) newline_in(buf, lo, hi, 1)

/* Index of the first "]: " in buf[lo:hi], or -1. */
static Py_ssize_t
find_frame_end(const unsigned char *buf, Py_ssize_t lo, Py_ssize_t hi)
{
    if (hi - lo < 3)
        return -1;
    const unsigned char *q = memmem(buf + lo, (size_t)(hi - lo), "]: ", 3);
    return q ? q - buf : -1;
}

/* bytes(buf[s:e]) without one trailing CR. */
static PyObject *
line_bytes(const unsigned char *buf, Py_ssize_t s, Py_ssize_t e)
{
    if (e > s && buf[e - 1] == '\r')
        e--;
    return PyBytes_FromStringAndSize((const char *)buf + s, e > s ? e - s : 0);
}

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len, end;
    /* the tick handler (NULL: no ticks read here) and what it is read through */
    PyObject *ticker, *slow, *series, *cache, *ts_append, *src_append, *line_append, *src_id;
    int check_multi, multi_open, empty, dirty;
    double keep, last;
    Py_ssize_t prev_s, prev_to; /* the latest plain tick whose text the handler has not got */
    unsigned char key[11];      /* a one-entry cache in front of the handler's minute cache */
    double key_base;
    int key_ok;
} Ticks;

/* The end of the line holding offset `to` (its '\n', or the buffer's end). */
static Py_ssize_t
line_end(const Ticks *t, Py_ssize_t to)
{
    Py_ssize_t e = find_nl(t->buf, to, t->len);
    return e < 0 ? t->len : e;
}

/* Give the handler the ticks' state before Python code runs: last_tick_ts and the text
   of the latest tick (what the Python `ticks` does at the end of a batch). */
static int
sync_state(Ticks *t)
{
    if (!t->ticker || !t->dirty)
        return 0;
    PyObject *f = PyFloat_FromDouble(t->last);
    if (!f || PyObject_SetAttr(t->ticker, s_last_tick_ts, f) < 0) {
        Py_XDECREF(f);
        return -1;
    }
    Py_DECREF(f);
    if (t->prev_s >= 0) {
        PyObject *text = line_bytes(t->buf, t->prev_s, line_end(t, t->prev_to));
        if (!text || PyObject_SetAttr(t->ticker, s_last_tick_text, text) < 0) {
            Py_XDECREF(text);
            return -1;
        }
        Py_DECREF(text);
        t->prev_s = -1;
    }
    t->dirty = 0;
    return 0;
}

/* Read back what Python code may have changed: last_tick_ts, and whether the series is
   still empty. With `multi`, also whether a multi-line value is open: the Python path
   looks at that where a batch of ticks starts and while a value stays open, not after a
   tick it hands to `slow` (see Dispatcher.on_ticks). */
static int
refresh_state(Ticks *t, int multi)
{
    if (!t->ticker)
        return 0;
    PyObject *v = PyObject_GetAttr(t->ticker, s_last_tick_ts);
    if (!v)
        return -1;
    t->last = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (t->last == -1.0 && PyErr_Occurred())
        return -1;
    if (t->empty) {
        Py_ssize_t n = PyObject_Length(t->series);
        if (n < 0)
            return -1;
        t->empty = n == 0;
    }
    if (multi && t->check_multi) {
        v = PyObject_GetAttr(t->ticker, s_multi);
        if (!v)
            return -1;
        t->multi_open = v != Py_None;
        Py_DECREF(v);
    }
    return 0;
}

/* Call fn(lineno, line) for a tick line the fast path does not take. */
static int
call_with_line(Ticks *t, PyObject *fn, long long lineno, Py_ssize_t s, Py_ssize_t to, PyObject *ts)
{
    PyObject *line = line_bytes(t->buf, s, line_end(t, to));
    if (!line)
        return -1;
    PyObject *n = PyLong_FromLongLong(lineno);
    if (!n) {
        Py_DECREF(line);
        return -1;
    }
    PyObject *argv[3] = {ts, n, line};
    PyObject *r = ts ? PyObject_Vectorcall(fn, argv, 3, NULL) : PyObject_Vectorcall(fn, argv + 1, 2, NULL);
    Py_DECREF(n);
    Py_DECREF(line);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int
is_digits(const unsigned char *p, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

/* The seconds `ss.uuuuuu` (two digits, the '.', six digits: what the regex path reads);
   0 when they read, 1 when not. N / 1e6 with N < 1e8 is the correctly rounded decimal,
   the float Python's float() gives for the same digits. */
static int
read_secs(const unsigned char *p, double *out)
{
    if (!is_digits(p, 2) || !is_digits(p + 3, 6))
        return 1;
    long n = (p[0] - '0') * 10 + (p[1] - '0');
    for (int i = 3; i < 9; i++)
        n = n * 10 + (p[i] - '0');
    *out = (double)n / 1e6;
    return 0;
}

/* The epoch of the stamp's minute (key = `Lmmdd hh:mm`); 0 found, 1 not cached, -1 error. */
static int
minute_base(Ticks *t, const unsigned char *key, double *out)
{
    if (t->key_ok && memcmp(t->key, key, 11) == 0) {
        *out = t->key_base;
        return 0;
    }
    PyObject *k = PyBytes_FromStringAndSize((const char *)key, 11);
    if (!k)
        return -1;
    PyObject *v = PyDict_GetItemWithError(t->cache, k); /* borrowed */
    Py_DECREF(k);
    if (!v)
        return PyErr_Occurred() ? -1 : 1;
    if (v == Py_None)
        return 1;
    double base = PyFloat_AsDouble(v);
    if (base == -1.0 && PyErr_Occurred())
        return -1;
    memcpy(t->key, key, 11);
    t->key_base = base;
    t->key_ok = 1;
    *out = base;
    return 0;
}

static int
append_tick(Ticks *t, double ts, long long lineno)
{
    PyObject *f = PyFloat_FromDouble(ts);
    if (!f)
        return -1;
    PyObject *r = PyObject_CallOneArg(t->ts_append, f);
    Py_DECREF(f);
    if (!r)
        return -1;
    Py_DECREF(r);
    r = PyObject_CallOneArg(t->src_append, t->src_id);
    if (!r)
        return -1;
    Py_DECREF(r);
    PyObject *n = PyLong_FromLongLong(lineno);
    if (!n)
        return -1;
    r = PyObject_CallOneArg(t->line_append, n);
    Py_DECREF(n);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* One relist tick whose needle ends at `to`, in the line numbered `lineno` (the Python
   `RelistTicks.ticks` for one entry of `ends`, with Dispatcher.on_ticks' open-value case). */
static int
tick(Ticks *t, Py_ssize_t to, long long lineno)
{
    const unsigned char *buf = t->buf;
    if (t->check_multi && t->multi_open) { /* a tick closes an open multi-line value: in order */
        if (sync_state(t) < 0)
            return -1;
        if (call_with_line(t, t->slow, lineno, rfind_nl(buf, 0, to) + 1, to, NULL) < 0)
            return -1;
        return refresh_state(t, 1);
    }
    Py_ssize_t s = rfind_nl(buf, 0, to) + 1;
    Py_ssize_t p = find_frame_end(buf, s, to);
    if (p >= 0)
        p += 3;
    else if (find_frame_end(buf, to, line_end(t, to)) < 0)
        p = s; /* no journald frame: the stamp starts the line */
    double ts = 0.0;
    int plain = 0;
    if (p >= 0 && p + 22 <= to && buf[p + 14] == '.' && buf[p + 21] == ' ') {
        double base, secs;
        int r = minute_base(t, buf + p, &base);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (read_secs(buf + p + 12, &secs) == 0) {
                ts = base + secs;
                plain = 1;
            }
        }
    }
    if (!plain) {
        t->dirty = 1;
        if (sync_state(t) < 0 || call_with_line(t, t->slow, lineno, s, to, NULL) < 0)
            return -1;
        if (refresh_state(t, 0) < 0)
            return -1;
        t->prev_s = -1;
        return 0;
    }
    double d = ts - t->last;
    if (t->last >= 0 && !(-t->keep < d && d < t->keep)) { /* a long interval: keep texts */
        t->dirty = 1;
        if (sync_state(t) < 0)
            return -1;
        PyObject *fn = PyObject_GetAttr(t->ticker, s_add_tick);
        if (!fn)
            return -1;
        PyObject *f = PyFloat_FromDouble(ts);
        int rc = f ? call_with_line(t, fn, lineno, s, to, f) : -1;
        Py_XDECREF(f);
        Py_DECREF(fn);
        if (rc < 0 || refresh_state(t, 0) < 0)
            return -1;
        t->last = ts;
        t->prev_s = -1;
        t->dirty = 1;
        return 0;
    }
    if (append_tick(t, ts, lineno) < 0)
        return -1;
    t->last = ts;
    t->prev_s = s;
    t->prev_to = to;
    t->dirty = 1;
    if (t->empty) {
        PyObject *text = line_bytes(buf, s, line_end(t, to));
        if (!text || PyObject_SetAttr(t->ticker, s_first_tick_text, text) < 0) {
            Py_XDECREF(text);
            return -1;
        }
        Py_DECREF(text);
        t->empty = 0;
    }
    return 0;
}

static int
init_ticks(Ticks *t, PyObject *ticker, PyObject *slow, int check_multi)
{
    t->ticker = ticker;
    t->slow = slow;
    t->check_multi = check_multi;
    t->prev_s = -1;
    t->key_ok = 0;
    t->dirty = 0;
    t->multi_open = 0;
    t->cache = PyObject_GetAttr(ticker, s_minute_cache);
    t->ts_append = PyObject_GetAttr(ticker, s_ts_append);
    t->src_append = PyObject_GetAttr(ticker, s_src_append);
    t->line_append = PyObject_GetAttr(ticker, s_line_append);
    t->src_id = PyObject_GetAttr(ticker, s_src_id);
    if (!t->cache || !t->ts_append || !t->src_append || !t->line_append || !t->src_id)
        return -1;
    if (!PyDict_Check(t->cache)) {
        PyErr_SetString(PyExc_TypeError, "_minute_cache must be a dict");
        return -1;
    }
    PyObject *keep = PyObject_GetAttr(ticker, s_keep);
    if (!keep)
        return -1;
    t->keep = PyFloat_AsDouble(keep);
    Py_DECREF(keep);
    if (t->keep == -1.0 && PyErr_Occurred())
        return -1;
    t->series = PyObject_GetAttr(ticker, s_series);
    if (!t->series)
        return -1;
    t->empty = 1;
    return refresh_state(t, 1);
}

static void
clear_ticks(Ticks *t)
{
    Py_CLEAR(t->series);
    Py_CLEAR(t->cache);
    Py_CLEAR(t->ts_append);
    Py_CLEAR(t->src_append);
    Py_CLEAR(t->line_append);
    Py_CLEAR(t->src_id);
}

PyDoc_STRVAR(scan_matches_doc,
             "scan_matches(buf, start, end, matches, skip_to, counted_to, cur, tick_tag, on_line, follow,\n"
             "             follow_lines, ticker, slow, check_multi) -> (lines, candidates)\n\n"
             "The loop of LineScanner._candidates over `matches` (see that method).");

static PyObject *
scan_matches(PyObject *module, PyObject *args)
{
    PyObject *bufobj, *matches, *on_line, *follow, *follow_lines, *ticker, *slow;
    Py_ssize_t start, end, skip_to, counted_to;
    long long cur;
    int tick_tag, check_multi;
    if (!PyArg_ParseTuple(args, "OnnO!nnLiOOOOOp", &bufobj, &start, &end, &PyList_Type, &matches, &skip_to,
                          &counted_to, &cur, &tick_tag, &on_line, &follow, &follow_lines, &ticker, &slow,
                          &check_multi))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t len = view.len;
    if (start < 0 || end < start || end > len || counted_to < start || counted_to > end || skip_to < start) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "region out of the buffer");
        return NULL;
    }
    Ticks t;
    memset(&t, 0, sizeof t);
    t.buf = buf;
    t.len = len;
    t.end = end;
    if (ticker == Py_None) {
        tick_tag = -1;
    } else if (init_ticks(&t, ticker, slow, check_multi) < 0) {
        goto fail;
    }
    Py_INCREF(matches);
    long long n = 0;
    Py_ssize_t pend_start = -1, pend_end = -1, last_tick = -1;
    int pend_tag = 0;
    int done = 0;
    for (Py_ssize_t i = 0;; i++) {
        Py_ssize_t to;
        int tag;
        if (i < PyList_GET_SIZE(matches)) {
            long long code = PyLong_AsLongLong(PyList_GET_ITEM(matches, i));
            if (code == -1 && PyErr_Occurred())
                goto fail_matches;
            if (code < 0 || (code >> TAG_BITS) > end) {
                PyErr_SetString(PyExc_ValueError, "match out of the region");
                goto fail_matches;
            }
            to = (Py_ssize_t)(code >> TAG_BITS);
            tag = (int)(code & TAG_MASK);
            if (to <= skip_to)
                continue;
            if (tag == tick_tag) {
                if (pend_start < 0 || to <= pend_end) {
                    pend_start = -1; /* a pending line the needle is in: a tick line */
                    goto take_tick;
                }
            } else if (to <= pend_end) {
                if (tag < pend_tag)
                    pend_tag = tag;
                continue;
            } else if (last_tick >= 0) {
                if (find_nl(buf, last_tick, to) < 0)
                    continue; /* in the latest tick's line */
                last_tick = -1;
            }
        } else {
            done = 1;
            to = end;
            tag = -1;
        }
        if (pend_start >= 0) { /* a match in a later line: deliver the pending line */
            if (sync_state(&t) < 0)
                goto fail_matches;
            cur += count_nl(buf + counted_to, pend_start - counted_to);
            counted_to = pend_start;
            n++;
            PyObject *line = line_bytes(buf, pend_start, pend_end);
            PyObject *num = line ? PyLong_FromLongLong(cur + 1) : NULL;
            PyObject *tg = num ? PyLong_FromLong(pend_tag) : NULL;
            PyObject *argv[3] = {num, line, tg};
            PyObject *r = tg ? PyObject_Vectorcall(on_line, argv, 3, NULL) : NULL;
            Py_XDECREF(line);
            Py_XDECREF(num);
            Py_XDECREF(tg);
            if (!r)
                goto fail_matches;
            Py_DECREF(r);
            pend_start = -1;
            if (follow != Py_None) {
                r = PyObject_CallNoArgs(follow);
                if (!r)
                    goto fail_matches;
                int asked = PyObject_IsTrue(r);
                Py_DECREF(r);
                if (asked < 0)
                    goto fail_matches;
                if (asked) {
                    long long first = cur + 1;
                    r = PyObject_CallFunction(follow_lines, "nL", pend_end + 1, first);
                    if (!r)
                        goto fail_matches;
                    Py_ssize_t pos;
                    long long lineno;
                    int ok = PyArg_ParseTuple(r, "nL", &pos, &lineno);
                    Py_DECREF(r);
                    if (!ok)
                        goto fail_matches;
                    if (pos < counted_to || pos > end) {
                        PyErr_SetString(PyExc_ValueError, "follow_lines went out of the region");
                        goto fail_matches;
                    }
                    counted_to = pos;
                    cur = lineno;
                    n += cur - first;
                    skip_to = counted_to;
                }
            }
            if (refresh_state(&t, 1) < 0)
                goto fail_matches;
            if (!done && to <= skip_to)
                continue;
        }
        if (done)
            break;
        if (tag == tick_tag)
            goto take_tick;
        {
            Py_ssize_t ls = rfind_nl(buf, start, to);
            pend_start = ls >= 0 ? ls + 1 : start;
            pend_end = find_nl(buf, to > start ? to - 1 : start, end);
            if (pend_end < 0)
                pend_end = end;
            pend_tag = tag;
        }
        continue;
    take_tick:
        n++;
        last_tick = to;
        if (to >= counted_to) {
            Py_ssize_t nl = count_nl(buf + counted_to, to - counted_to);
            if (nl == 0 && counted_to > 0 && buf[counted_to - 1] != '\n')
                continue; /* a second needle in the line of the previous one */
            cur += nl;
            counted_to = to;
            if (tick(&t, to, cur + 1) < 0)
                goto fail_matches;
        }
    }
    if (sync_state(&t) < 0)
        goto fail_matches;
    cur += count_nl(buf + counted_to, end - counted_to);
    Py_DECREF(matches);
    clear_ticks(&t);
    PyBuffer_Release(&view);
    return Py_BuildValue("LL", cur, n);

fail_matches:
    Py_DECREF(matches);
fail:
    clear_ticks(&t);
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *
py_count_nl(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &end))
        return NULL;
    if (start < 0)
        start = 0;
    if (end > view.len)
        end = view.len;
    Py_ssize_t c = end > start ? count_nl((const unsigned char *)view.buf + start, end - start) : 0;
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(c);
}

static PyMethodDef methods[] = {
    {"scan_matches", scan_matches, METH_VARARGS, scan_matches_doc},
    {"count_nl", py_count_nl, METH_VARARGS, "count_nl(buf, start, end) -> newlines in buf[start:end]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "plegdoctor._fastscan", "The compiled candidate loop of the log scanner.", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastscan(void)
{
#define INTERN(var, text)                                                                                              \
    if (!(var = PyUnicode_InternFromString(text)))                                                                     \
        return NULL;
    INTERN(s_multi, "multi");
    INTERN(s_last_tick_ts, "last_tick_ts");
    INTERN(s_last_tick_text, "last_tick_text");
    INTERN(s_add_tick, "_add_tick");
    INTERN(s_first_tick_text, "first_tick_text");
    INTERN(s_minute_cache, "_minute_cache");
    INTERN(s_ts_append, "_ts_append");
    INTERN(s_src_append, "_src_append");
    INTERN(s_line_append, "_line_append");
    INTERN(s_src_id, "src_id");
    INTERN(s_series, "series");
    INTERN(s_keep, "KEEP_TEXT_INTERVAL");
#undef INTERN
    return PyModule_Create(&module_def);
}
