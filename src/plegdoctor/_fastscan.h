/* Shared by the two files of the compiled scanner loop: _fastscan.c (the loop over a chunk's
   needle matches, the module) and _fastscan_ticks.c (relist ticks read into the handler's
   RelistSeries). See _fastscan.c for what the module does and how it is checked. */

#ifndef PLEGDOCTOR_FASTSCAN_H
#define PLEGDOCTOR_FASTSCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TAG_BITS 5
#define TAG_MASK ((1 << TAG_BITS) - 1)

/* Newlines in p[0:n]: eight bytes at a time (an exact "is zero" test per byte, the high
   bits summed by one multiplication: no popcount instruction needed). */
static inline Py_ssize_t
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
static inline Py_ssize_t
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
static inline Py_ssize_t
find_frame_end(const unsigned char *buf, Py_ssize_t lo, Py_ssize_t hi)
{
    if (hi - lo < 3)
        return -1;
    const unsigned char *q = memmem(buf + lo, (size_t)(hi - lo), "]: ", 3);
    return q ? q - buf : -1;
}

/* bytes(buf[s:e]) without one trailing CR. */
static inline PyObject *
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
    /* framed klog lines (NULL klog: all go to on_line): the dispatcher's `klog`, the
       handler's `_klog_minutes` and its resolver (_fastscan_klog.c) */
    PyObject *klog, *minutes, *resolver;
} Ticks;

/* Where the parts of a framed klog line are (offsets into the buffer). */
typedef struct {
    Py_ssize_t ident_s, ident_e, at, body; /* identifier, severity letter, message body */
    long long pid;                         /* the klog header's pid */
} KlogHead;

/* the handler's attribute names, interned once (fs_intern_names, at module init) */
extern PyObject *s_multi, *s_last_tick_ts, *s_last_tick_text, *s_add_tick, *s_first_tick_text, *s_minute_cache,
    *s_ts_append, *s_src_append, *s_line_append, *s_src_id, *s_series, *s_keep;
extern PyObject *s_klog_minutes, *s_klog_shift, *s_resolver, *s_last_month, *s_shift;
int fs_intern_names(void);

int fs_ticks_init(Ticks *t, PyObject *ticker, PyObject *slow, int check_multi);
void fs_ticks_clear(Ticks *t);
int fs_ticks_sync(Ticks *t);
int fs_ticks_refresh(Ticks *t, int multi);
int fs_tick(Ticks *t, Py_ssize_t to, long long lineno);

int fs_klog_head(const unsigned char *b, Py_ssize_t s, Py_ssize_t e, KlogHead *h);
int fs_klog_init(Ticks *t, PyObject *klog);
void fs_klog_clear(Ticks *t);
int fs_klog_line(Ticks *t, Py_ssize_t s, Py_ssize_t e, long long lineno, int tag, PyObject *line);
PyObject *fs_py_klog_head(PyObject *module, PyObject *arg);

PyObject *fs_py_intervals(PyObject *module, PyObject *arg);

#endif
