/* The relist intervals of the timeline (plegdoctor.analysis.pleg_timeline), compiled.

   intervals(ts) takes the tick times of a RelistSeries (an array('d')) and returns the
   differences of consecutive times and the same values sorted, as two bytes objects of
   native doubles; build_timeline reads its percentiles, short-interval count, maximum and
   gaps from them. Python's `list(map(operator.sub, ...))` and `sorted()` of 10^5 floats
   cost ~12 ms; this is a subtraction loop and an LSD radix sort (8 passes of one byte at
   most, O(n) whatever the input).

   It answers only the case where every interval is a non-negative number other than -0.0:
   then the bit patterns of the doubles order as unsigned integers exactly as the values
   do, and equal values are the same bits, so the sort is the one sorted() gives. Any
   other interval (a clock step back, a NaN, -0.0) returns None and the caller runs its
   Python code, which decides as it always did. tests/test_fastscan_intervals.py compares
   both on generated and hostile series (make asan runs it under the sanitizers). */

#include "_fastscan.h"

#include <math.h>

static void
radix_sort(uint64_t *keys, uint64_t *tmp, Py_ssize_t n)
{
    Py_ssize_t count[256];
    uint64_t *src = keys, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        memset(count, 0, sizeof count);
        for (Py_ssize_t i = 0; i < n; i++)
            count[(src[i] >> shift) & 0xff]++;
        if (count[(src[0] >> shift) & 0xff] == n)
            continue; /* every key has this byte: the pass would not move anything */
        Py_ssize_t at = 0;
        for (int b = 0; b < 256; b++) {
            Py_ssize_t c = count[b];
            count[b] = at;
            at += c;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 0xff]++] = src[i];
        uint64_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != keys)
        memcpy(keys, src, (size_t)n * sizeof *keys);
}

PyObject *
fs_py_intervals(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (view.ndim != 1 || view.itemsize != (Py_ssize_t)sizeof(double) || view.format == NULL ||
        strcmp(view.format, "d") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "intervals() takes a buffer of doubles, e.g. array('d')");
        return NULL;
    }
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(double);
    if (n < 2) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    Py_ssize_t m = n - 1;
    const double *ts = view.buf;
    PyObject *diffs = PyBytes_FromStringAndSize(NULL, m * (Py_ssize_t)sizeof(double));
    PyObject *ordered = diffs ? PyBytes_FromStringAndSize(NULL, m * (Py_ssize_t)sizeof(double)) : NULL;
    uint64_t *tmp = ordered ? PyMem_Malloc((size_t)m * sizeof *tmp) : NULL;
    if (tmp == NULL) {
        PyBuffer_Release(&view);
        Py_XDECREF(diffs);
        Py_XDECREF(ordered);
        return PyErr_NoMemory();
    }
    double *d = (double *)PyBytes_AS_STRING(diffs);
    int plain = 1;
    for (Py_ssize_t i = 0; i < m; i++) {
        double x = ts[i + 1] - ts[i];
        if (!(x >= 0.0) || signbit(x)) { /* negative, NaN or -0.0: the Python path decides */
            plain = 0;
            break;
        }
        d[i] = x;
    }
    PyBuffer_Release(&view);
    if (!plain) {
        PyMem_Free(tmp);
        Py_DECREF(diffs);
        Py_DECREF(ordered);
        Py_RETURN_NONE;
    }
    uint64_t *keys = (uint64_t *)PyBytes_AS_STRING(ordered);
    memcpy(keys, d, (size_t)m * sizeof *keys);
    radix_sort(keys, tmp, m);
    PyMem_Free(tmp);
    PyObject *out = PyTuple_Pack(2, diffs, ordered);
    Py_DECREF(diffs);
    Py_DECREF(ordered);
    return out;
}
