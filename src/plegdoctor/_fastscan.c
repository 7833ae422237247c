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
   trusted. No allocation but Python objects; no state kept between calls. The ticks are
   read in _fastscan_ticks.c; _fastscan.h has what both files share. */

#include "_fastscan.h"

PyDoc_STRVAR(scan_matches_doc,
             "scan_matches(buf, start, end, matches, skip_to, counted_to, cur, tick_tag, on_line, follow,\n"
             "             follow_lines, ticker, slow, check_multi, klog) -> (lines, candidates)\n\n"
             "The loop of LineScanner._candidates over `matches` (see that method); `klog`\n"
             "(None: every line to on_line) takes the framed klog lines _fastscan_klog.c reads.");

static PyObject *
scan_matches(PyObject *module, PyObject *args)
{
    PyObject *bufobj, *matches, *on_line, *follow, *follow_lines, *ticker, *slow, *klog;
    Py_ssize_t start, end, skip_to, counted_to;
    long long cur;
    int tick_tag, check_multi;
    if (!PyArg_ParseTuple(args, "OnnO!nnLiOOOOOpO", &bufobj, &start, &end, &PyList_Type, &matches, &skip_to,
                          &counted_to, &cur, &tick_tag, &on_line, &follow, &follow_lines, &ticker, &slow,
                          &check_multi, &klog))
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
    } else if (fs_ticks_init(&t, ticker, slow, check_multi) < 0 || (klog != Py_None && fs_klog_init(&t, klog) < 0)) {
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
            if (fs_ticks_sync(&t) < 0)
                goto fail_matches;
            cur += count_nl(buf + counted_to, pend_start - counted_to);
            counted_to = pend_start;
            n++;
            PyObject *line = line_bytes(buf, pend_start, pend_end);
            if (!line)
                goto fail_matches;
            int taken = t.klog ? fs_klog_line(&t, pend_start, pend_end, cur + 1, pend_tag, line) : 0;
            if (taken == 0) {
                PyObject *num = PyLong_FromLongLong(cur + 1);
                PyObject *tg = num ? PyLong_FromLong(pend_tag) : NULL;
                PyObject *argv[3] = {num, line, tg};
                PyObject *r = tg ? PyObject_Vectorcall(on_line, argv, 3, NULL) : NULL;
                Py_XDECREF(num);
                Py_XDECREF(tg);
                if (!r)
                    taken = -1;
                Py_XDECREF(r);
            }
            Py_DECREF(line);
            if (taken < 0)
                goto fail_matches;
            PyObject *r;
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
            if (fs_ticks_refresh(&t, 1) < 0)
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
            if (fs_tick(&t, to, cur + 1) < 0)
                goto fail_matches;
        }
    }
    if (fs_ticks_sync(&t) < 0)
        goto fail_matches;
    cur += count_nl(buf + counted_to, end - counted_to);
    Py_DECREF(matches);
    fs_ticks_clear(&t);
    PyBuffer_Release(&view);
    return Py_BuildValue("LL", cur, n);

fail_matches:
    Py_DECREF(matches);
fail:
    fs_ticks_clear(&t);
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
    {"read_klog_head", fs_py_klog_head, METH_O,
     "read_klog_head(line) -> (ident start, ident end, severity at, pid, body at) of a framed klog line, or None"},
    {"intervals", fs_py_intervals, METH_O,
     "intervals(ts) -> (differences, sorted differences) of an array('d') as bytes of doubles, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "plegdoctor._fastscan", "The compiled candidate loop of the log scanner.", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastscan(void)
{
    if (fs_intern_names() < 0)
        return NULL;
    return PyModule_Create(&module_def);
}
