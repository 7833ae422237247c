/* Framed klog lines read by the compiled scanner loop (see _fastscan.c): the journald
   short frame and klog header of a candidate line, read as FRAMED_KLOG_RE reads them on the
   hot path of Dispatcher.on_line, with the stamp's epoch from the kubelet handler's minute
   cache, handed to the dispatcher's `klog` method instead of `on_line`.

   Only a strict subset is taken: printable ASCII where the regex has \S, [^\s...] or
   [^ :\]] (Python's str classes also take other whitespace and non-ASCII, which the regex
   reads differently), ASCII digits, a known month, every part within the bounds the regex
   has. Any other line, and a stamp whose minute the cache does not hold for the resolver's
   month and year, goes to on_line as before: taking a line here is never a guess, and
   tests/test_fastscan.py checks read_klog_head against the regex. */

#include "_fastscan.h"

PyObject *s_klog_minutes, *s_klog_shift, *s_resolver, *s_last_month, *s_shift;

static int
is_graph(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Digits at b[p:e], at most `most`: how many (0: none, or more than `most`). */
static int
digits(const unsigned char *b, Py_ssize_t p, Py_ssize_t e, int most)
{
    int n = 0;
    while (p + n < e && is_digit(b[p + n])) {
        if (++n > most)
            return 0;
    }
    return n;
}

static int
fixed_digits(const unsigned char *b, Py_ssize_t p, Py_ssize_t e, int n)
{
    if (p + n > e)
        return 0;
    for (int i = 0; i < n; i++)
        if (!is_digit(b[p + i]))
            return 0;
    return 1;
}

static const char MONTH_NAMES[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

int
fs_klog_head(const unsigned char *b, Py_ssize_t s, Py_ssize_t e, KlogHead *h)
{
    Py_ssize_t p = s;
    /* Mmm +dd hh:mm:ss(.f{1,9})? */
    if (e - p < 3)
        return 0;
    int month = 0;
    for (int i = 0; i < 12; i++)
        if (memcmp(b + p, MONTH_NAMES + 3 * i, 3) == 0)
            month = i + 1;
    if (!month)
        return 0;
    p += 3;
    if (p >= e || b[p] != ' ')
        return 0;
    while (p < e && b[p] == ' ')
        p++;
    int n = digits(b, p, e, 2);
    if (!n)
        return 0;
    p += n;
    if (p + 9 > e || b[p] != ' ' || !fixed_digits(b, p + 1, e, 2) || b[p + 3] != ':' || !fixed_digits(b, p + 4, e, 2) ||
        b[p + 6] != ':' || !fixed_digits(b, p + 7, e, 2))
        return 0;
    p += 9;
    if (p < e && b[p] == '.') {
        n = digits(b, p + 1, e, 9);
        if (!n)
            return 0;
        p += 1 + n;
    }
    /* ' ' HOST ' ' IDENT ('[' PID ']')? ':' ' '? */
    if (p >= e || b[p] != ' ')
        return 0;
    p++;
    Py_ssize_t q = p;
    while (q < e && is_graph(b[q]))
        q++;
    if (q == p || q >= e || b[q] != ' ')
        return 0;
    p = q + 1;
    h->ident_s = p;
    while (p < e && is_graph(b[p]) && b[p] != '[' && b[p] != ']' && b[p] != ':')
        p++;
    h->ident_e = p;
    if (p == h->ident_s || p >= e)
        return 0;
    if (b[p] == '[') {
        n = digits(b, p + 1, e, 20);
        if (!n || p + 1 + n >= e || b[p + 1 + n] != ']')
            return 0;
        p += n + 2;
    }
    if (p >= e || b[p] != ':')
        return 0;
    p++;
    if (p < e && b[p] == ' ')
        p++;
    /* Lmmdd hh:mm:ss.uuuuuu +PID FILE:LINE] ? */
    h->at = p;
    if (p + 22 > e || !(b[p] == 'I' || b[p] == 'W' || b[p] == 'E' || b[p] == 'F') || !fixed_digits(b, p + 1, e, 4) ||
        b[p + 5] != ' ' || !fixed_digits(b, p + 6, e, 2) || b[p + 8] != ':' || !fixed_digits(b, p + 9, e, 2) ||
        b[p + 11] != ':' || !fixed_digits(b, p + 12, e, 2) || b[p + 14] != '.' || !fixed_digits(b, p + 15, e, 6) ||
        b[p + 21] != ' ')
        return 0;
    p += 22;
    while (p < e && b[p] == ' ')
        p++;
    n = digits(b, p, e, 10);
    if (!n || p + n >= e || b[p + n] != ' ')
        return 0;
    long long pid = 0;
    for (int i = 0; i < n; i++)
        pid = pid * 10 + (b[p + i] - '0');
    h->pid = pid;
    p += n + 1;
    q = p;
    while (q < e && is_graph(b[q]) && b[q] != ':' && b[q] != ']')
        q++;
    if (q == p || q >= e || b[q] != ':')
        return 0;
    p = q + 1;
    n = digits(b, p, e, 10);
    if (!n || p + n >= e || b[p + n] != ']')
        return 0;
    p += n + 1;
    if (p < e && b[p] == ' ')
        p++;
    h->body = p;
    return 1;
}

int
fs_klog_init(Ticks *t, PyObject *klog)
{
    t->klog = klog;
    t->minutes = PyObject_GetAttr(t->ticker, s_klog_minutes);
    t->resolver = t->minutes ? PyObject_GetAttr(t->ticker, s_resolver) : NULL;
    if (!t->resolver)
        return -1;
    if (!PyDict_Check(t->minutes)) {
        PyErr_SetString(PyExc_TypeError, "_klog_minutes must be a dict");
        return -1;
    }
    return 0;
}

void
fs_klog_clear(Ticks *t)
{
    Py_CLEAR(t->minutes);
    Py_CLEAR(t->resolver);
}

static int
long_attr(PyObject *obj, PyObject *name, long *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (!v)
        return -1;
    *out = PyLong_AsLong(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The epoch of the stamp at b[at:] as KubeletHandler._klog_epoch computes it on a cache hit
   (minute epoch + int(ss) + int(uuuuuu) / 1e6); 1: not cached for this month and year. */
static int
klog_epoch(Ticks *t, const unsigned char *b, Py_ssize_t at, double *out)
{
    long shift, own_shift, last_month;
    if (long_attr(t->resolver, s_shift, &shift) < 0 || long_attr(t->ticker, s_klog_shift, &own_shift) < 0)
        return -1;
    if (shift != own_shift)
        return 1; /* a year rollover: the handler clears its cache first */
    PyObject *key = PyUnicode_FromStringAndSize((const char *)b + at + 1, 10);
    if (!key)
        return -1;
    PyObject *hit = PyDict_GetItemWithError(t->minutes, key); /* borrowed */
    Py_DECREF(key);
    if (!hit)
        return PyErr_Occurred() ? -1 : 1;
    if (!PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 2)
        return 1;
    if (long_attr(t->resolver, s_last_month, &last_month) < 0)
        return -1;
    long month = PyLong_AsLong(PyTuple_GET_ITEM(hit, 1));
    if (month == -1 && PyErr_Occurred())
        return -1;
    if (month != last_month)
        return 1;
    double base = PyFloat_AsDouble(PyTuple_GET_ITEM(hit, 0));
    if (base == -1.0 && PyErr_Occurred())
        return -1;
    long ss = (b[at + 12] - '0') * 10 + (b[at + 13] - '0'), us = 0;
    for (int i = 15; i < 21; i++)
        us = us * 10 + (b[at + i] - '0');
    *out = (base + (double)ss) + (double)us / 1e6;
    return 0;
}

int
fs_klog_line(Ticks *t, Py_ssize_t s, Py_ssize_t e, long long lineno, int tag, PyObject *line)
{
    if (e > s && t->buf[e - 1] == '\r')
        e--; /* what line_bytes dropped */
    KlogHead h;
    if (!fs_klog_head(t->buf, s, e, &h))
        return 0;
    double epoch;
    int r = klog_epoch(t, t->buf, h.at, &epoch);
    if (r != 0)
        return r < 0 ? -1 : 0;
    PyObject *ident = PyUnicode_FromStringAndSize((const char *)t->buf + h.ident_s, h.ident_e - h.ident_s);
    PyObject *argv[8] = {PyLong_FromLongLong(lineno), line, PyLong_FromLong(tag), ident, PyLong_FromSsize_t(h.at - s),
                         PyLong_FromLongLong(h.pid), PyLong_FromSsize_t(h.body - s), PyFloat_FromDouble(epoch)};
    PyObject *res = NULL;
    if (argv[0] && argv[2] && argv[3] && argv[4] && argv[5] && argv[6] && argv[7])
        res = PyObject_Vectorcall(t->klog, argv, 8, NULL);
    for (int i = 0; i < 8; i++)
        if (i != 1)
            Py_XDECREF(argv[i]);
    if (!res)
        return -1;
    Py_DECREF(res);
    return 1;
}

PyObject *
fs_py_klog_head(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    KlogHead h;
    int ok = fs_klog_head(view.buf, 0, view.len, &h);
    PyBuffer_Release(&view);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("nnnLn", h.ident_s, h.ident_e, h.at, h.pid, h.body);
}
