/* Relist ticks read by the compiled scanner loop (see _fastscan.c): the Python
   `RelistTicks.ticks` for one tick, and the handler state synced around Python calls. */

#include "_fastscan.h"

PyObject *s_multi, *s_last_tick_ts, *s_last_tick_text, *s_add_tick, *s_first_tick_text, *s_minute_cache,
    *s_ts_append, *s_src_append, *s_line_append, *s_src_id, *s_series, *s_keep;

int
fs_intern_names(void)
{
    static const struct {
        PyObject **var;
        const char *text;
    } names[] = {
        {&s_multi, "multi"},
        {&s_last_tick_ts, "last_tick_ts"},
        {&s_last_tick_text, "last_tick_text"},
        {&s_add_tick, "_add_tick"},
        {&s_first_tick_text, "first_tick_text"},
        {&s_minute_cache, "_minute_cache"},
        {&s_ts_append, "_ts_append"},
        {&s_src_append, "_src_append"},
        {&s_line_append, "_line_append"},
        {&s_src_id, "src_id"},
        {&s_series, "series"},
        {&s_keep, "KEEP_TEXT_INTERVAL"},
        {&s_klog_minutes, "_klog_minutes"},
        {&s_klog_shift, "_klog_shift"},
        {&s_resolver, "resolver"},
        {&s_last_month, "_last_month"},
        {&s_shift, "shift"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!(*names[i].var = PyUnicode_InternFromString(names[i].text)))
            return -1;
    return 0;
}

/* The end of the line holding offset `to` (its '\n', or the buffer's end). */
static Py_ssize_t
line_end(const Ticks *t, Py_ssize_t to)
{
    Py_ssize_t e = find_nl(t->buf, to, t->len);
    return e < 0 ? t->len : e;
}

/* Give the handler the ticks' state before Python code runs: last_tick_ts and the text
   of the latest tick (what the Python `ticks` does at the end of a batch). */
int
fs_ticks_sync(Ticks *t)
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
int
fs_ticks_refresh(Ticks *t, int multi)
{
    if (!t->ticker)
        return 0;
    t->key_ok = 0; /* Python code ran: the minute cache may have been cleared (a year rollover) */
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
int
fs_tick(Ticks *t, Py_ssize_t to, long long lineno)
{
    const unsigned char *buf = t->buf;
    if (t->check_multi && t->multi_open) { /* a tick closes an open multi-line value: in order */
        if (fs_ticks_sync(t) < 0)
            return -1;
        if (call_with_line(t, t->slow, lineno, rfind_nl(buf, 0, to) + 1, to, NULL) < 0)
            return -1;
        return fs_ticks_refresh(t, 1);
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
        if (fs_ticks_sync(t) < 0 || call_with_line(t, t->slow, lineno, s, to, NULL) < 0)
            return -1;
        if (fs_ticks_refresh(t, 0) < 0)
            return -1;
        t->prev_s = -1;
        return 0;
    }
    double d = ts - t->last;
    if (t->last >= 0 && !(-t->keep < d && d < t->keep)) { /* a long interval: keep texts */
        t->dirty = 1;
        if (fs_ticks_sync(t) < 0)
            return -1;
        PyObject *fn = PyObject_GetAttr(t->ticker, s_add_tick);
        if (!fn)
            return -1;
        PyObject *f = PyFloat_FromDouble(ts);
        int rc = f ? call_with_line(t, fn, lineno, s, to, f) : -1;
        Py_XDECREF(f);
        Py_DECREF(fn);
        if (rc < 0 || fs_ticks_refresh(t, 0) < 0)
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

int
fs_ticks_init(Ticks *t, PyObject *ticker, PyObject *slow, int check_multi)
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
    return fs_ticks_refresh(t, 1);
}

void
fs_ticks_clear(Ticks *t)
{
    Py_CLEAR(t->series);
    Py_CLEAR(t->cache);
    Py_CLEAR(t->ts_append);
    Py_CLEAR(t->src_append);
    Py_CLEAR(t->line_append);
    Py_CLEAR(t->src_id);
    fs_klog_clear(t);
}
