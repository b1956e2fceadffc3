/* ExportTraceServiceRequest wire bytes -> plain Python tuples, for relay.convert.convert_parsed.
 *
 * The native twin of upb's parse + the field reads of relay/convert.py. It reads untrusted bytes:
 * every length is checked against the bytes left, nesting is bounded (MAX_DEPTH), nothing
 * recurses without the depth counter.
 *
 * Contract: parse_request() returns the parsed request, or None. None means "not handled here":
 * anything outside the plain, canonical shape real OTLP exporters send (a truncated or malformed
 * message, invalid UTF-8, an unknown field, a wire type other than the field's, a singular field
 * or a oneof member seen twice, deep nesting, an enum or count out of its type's range) makes the
 * caller parse with upb instead, which then gives its own answer (a DecodeError, or a message
 * convert_request handles). So a malformed request always gets upb's answer, by construction.
 *
 * Result: list of (resource_attributes: dict, schema_url: str, scopes: list) with
 * scope = (name, version, schema_url, spans), span = (trace_id, span_id, trace_state,
 * parent_span_id, name, kind, start, end, attributes, dropped_attributes, events,
 * dropped_events, links, dropped_links, status_code, status_message, flags, size) where size,
 * the span's length on the wire, equals upb's ByteSize() (non-canonical input is left to upb),
 * event = (time, name, attributes, dropped), link = (trace_id, span_id, trace_state, attributes,
 * dropped, flags). No global state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32 /* AnyValue nesting handled here; deeper requests go to upb (limit 100) */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Attribute keys repeat across the spans of a request ("vertex", "rpc.system", ...): each
 * distinct key is decoded once per request and its str shared, which also saves memory for
 * queued spans. Open addressing, never more than 3/4 full, keys point into the request bytes. */
#define KEY_SLOTS 256
#define KEY_MAX_LEN 128

typedef struct {
    uint32_t hash;
    Py_ssize_t len;
    const unsigned char *at;
    PyObject *str;
} KeySlot;

typedef struct {
    KeySlot slot[KEY_SLOTS];
    int used;
} Keys;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    Keys *keys; /* per parse_request call; shared by every nested reader */
} Rd;

/* Every failure returns -1 / NULL. With no Python error set it means "bail" (use upb). */

static int varint(Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char b = *r->p++;
        if (shift == 63 && b > 1) return -1;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift > 0) return -1; /* overlong: not what upb would write back */
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int tag(Rd *r, uint32_t *field, int *wt) {
    uint64_t t;
    if (varint(r, &t) || t > UINT32_MAX) return -1;
    *field = (uint32_t)(t >> 3);
    *wt = (int)(t & 7);
    return *field == 0 ? -1 : 0;
}

static int sub(Rd *r, Rd *out) {
    uint64_t n;
    if (varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
    out->p = r->p;
    out->end = r->p + n;
    out->keys = r->keys;
    r->p += n;
    return 0;
}

static int fixed(Rd *r, int size, uint64_t *out) {
    if (r->end - r->p < size) return -1;
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--) v = (v << 8) | r->p[i];
    r->p += size;
    *out = v;
    return 0;
}

/* A singular field seen twice (merge / last-wins semantics) is left to upb. */
static int once(uint32_t *seen, uint32_t field) {
    if (field >= 32 || (*seen & (1u << field))) return -1;
    *seen |= 1u << field;
    return 0;
}

static PyObject *str_of(Rd *r) {
    Rd s;
    if (sub(r, &s)) return NULL;
    PyObject *v = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
    if (v == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)) PyErr_Clear(); /* invalid: bail */
    return v;
}

static PyObject *bytes_of(Rd *r) {
    Rd s;
    if (sub(r, &s)) return NULL;
    return PyBytes_FromStringAndSize((const char *)s.p, s.end - s.p);
}

/* Replace *slot (a default) with a new value; NULL value fails. */
static int set(PyObject **slot, PyObject *value) {
    if (value == NULL) return -1;
    Py_SETREF(*slot, value);
    return 0;
}

static int u32(Rd *r, PyObject **slot) {
    uint64_t v;
    if (varint(r, &v) || v > UINT32_MAX) return -1;
    return set(slot, PyLong_FromUnsignedLongLong(v));
}

static int i32(Rd *r, PyObject **slot) {
    uint64_t v;
    if (varint(r, &v)) return -1;
    int64_t s = (int64_t)v;
    if (s < INT32_MIN || s > INT32_MAX) return -1;
    return set(slot, PyLong_FromLongLong(s));
}

static int fixed_int(Rd *r, int size, PyObject **slot) {
    uint64_t v;
    return fixed(r, size, &v) ? -1 : set(slot, PyLong_FromUnsignedLongLong(v));
}

/* Non-oneof proto3 scalars: upb drops a default (0, "") when it writes the message back, so
 * ByteSize() would differ from the wire; such (non-canonical) input is left to upb. */
static PyObject *str_nz(Rd *r) {
    PyObject *v = str_of(r);
    if (v != NULL && PyUnicode_GET_LENGTH(v) == 0) Py_CLEAR(v);
    return v;
}

static PyObject *bytes_nz(Rd *r) {
    PyObject *v = bytes_of(r);
    if (v != NULL && PyBytes_GET_SIZE(v) == 0) Py_CLEAR(v);
    return v;
}

static int nonzero(PyObject **slot) {
    int truth = PyObject_IsTrue(*slot);
    return truth > 0 ? 0 : -1;
}

static int u32_nz(Rd *r, PyObject **slot) { return u32(r, slot) || nonzero(slot) ? -1 : 0; }
static int i32_nz(Rd *r, PyObject **slot) { return i32(r, slot) || nonzero(slot) ? -1 : 0; }
static int fixed_nz(Rd *r, int size, PyObject **slot) {
    return fixed_int(r, size, slot) || nonzero(slot) ? -1 : 0;
}

static PyObject *decode(const unsigned char *p, Py_ssize_t n) {
    PyObject *v = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (v == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)) PyErr_Clear(); /* invalid: bail */
    return v;
}

/* A KeyValue key (non-empty, else upb decides), through the per-request key cache. */
static PyObject *key_str(Rd *r) {
    Rd s;
    if (sub(r, &s)) return NULL;
    Py_ssize_t n = s.end - s.p;
    if (n == 0) return NULL;
    Keys *k = r->keys;
    if (k == NULL || n > KEY_MAX_LEN) return decode(s.p, n);
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s.p[i]) * 16777619u;
    for (uint32_t probe = 0; probe < KEY_SLOTS; probe++) {
        KeySlot *e = &k->slot[(h + probe) & (KEY_SLOTS - 1)];
        if (e->str == NULL) {
            PyObject *v = decode(s.p, n);
            if (v != NULL && k->used < KEY_SLOTS * 3 / 4) {
                *e = (KeySlot){h, n, s.p, Py_NewRef(v)};
                k->used++;
            }
            return v;
        }
        if (e->hash == h && e->len == n && memcmp(e->at, s.p, (size_t)n) == 0) return Py_NewRef(e->str);
    }
    return decode(s.p, n); /* not reached: the table always has an empty slot */
}

static PyObject *empty_str(void) { return PyUnicode_FromStringAndSize("", 0); }

static PyObject *any_value(Rd r, int depth);
static int key_values(Rd r, PyObject *dict, int depth);

/* ArrayValue -> tuple */
static PyObject *array_value(Rd r, int depth) {
    PyObject *items = PyList_New(0);
    while (items != NULL && r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt) || f != 1 || wt != WT_LEN || sub(&r, &s)) goto fail;
        PyObject *v = any_value(s, depth + 1);
        if (v == NULL) goto fail;
        int rc = PyList_Append(items, v);
        Py_DECREF(v);
        if (rc) goto fail;
    }
    if (items == NULL) return NULL;
    PyObject *t = PyList_AsTuple(items);
    Py_DECREF(items);
    return t;
fail:
    Py_XDECREF(items);
    return NULL;
}

/* KeyValueList -> dict */
static PyObject *kvlist_value(Rd r, int depth) {
    PyObject *d = PyDict_New();
    if (d != NULL && key_values(r, d, depth + 1)) Py_CLEAR(d);
    return d;
}

/* AnyValue -> str | bool | int | float | bytes | tuple | dict | None */
static PyObject *any_value(Rd r, int depth) {
    if (depth > MAX_DEPTH) return NULL;
    PyObject *v = NULL;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t n;
        Rd s;
        if (tag(&r, &f, &wt) || v != NULL) goto fail; /* a second oneof member: upb decides */
        if (f == 1 && wt == WT_LEN) v = str_of(&r);
        else if (f == 2 && wt == WT_VARINT) v = varint(&r, &n) ? NULL : PyBool_FromLong(n != 0);
        else if (f == 3 && wt == WT_VARINT) v = varint(&r, &n) ? NULL : PyLong_FromLongLong((int64_t)n);
        else if (f == 4 && wt == WT_I64) {
            double d;
            if (fixed(&r, 8, &n) == 0) {
                memcpy(&d, &n, 8);
                v = PyFloat_FromDouble(d);
            }
        } else if (f == 5 && wt == WT_LEN) v = sub(&r, &s) ? NULL : array_value(s, depth);
        else if (f == 6 && wt == WT_LEN) v = sub(&r, &s) ? NULL : kvlist_value(s, depth);
        else if (f == 7 && wt == WT_LEN) v = bytes_of(&r);
        if (v == NULL) return NULL;
    }
    return v != NULL ? v : Py_NewRef(Py_None);
fail:
    Py_XDECREF(v);
    return NULL;
}

/* One KeyValue into dict (a later key replaces the value and keeps the first position). */
static int key_value(Rd r, PyObject *dict, int depth) {
    PyObject *key = empty_str(), *value = Py_NewRef(Py_None);
    uint32_t seen = 0;
    int rc = -1;
    while (key != NULL && r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt) || once(&seen, f)) goto done;
        if (f == 1 && wt == WT_LEN) {
            if (set(&key, key_str(&r))) goto done;
        } else if (f == 2 && wt == WT_LEN) {
            if (sub(&r, &s) || set(&value, any_value(s, depth + 1))) goto done;
        } else {
            goto done;
        }
    }
    rc = key == NULL ? -1 : PyDict_SetItem(dict, key, value);
done:
    Py_XDECREF(key);
    Py_DECREF(value);
    return rc;
}

/* Repeated KeyValue (field ``number`` of the caller) already isolated: every entry of r is one. */
static int key_values(Rd r, PyObject *dict, int depth) {
    if (depth > MAX_DEPTH) return -1;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt) || f != 1 || wt != WT_LEN || sub(&r, &s)) return -1;
        if (key_value(s, dict, depth)) return -1;
    }
    return 0;
}

/* One repeated-KeyValue field entry of a message: parse the KeyValue into dict. */
static int attribute(Rd *r, PyObject *dict) {
    Rd s;
    return sub(r, &s) ? -1 : key_value(s, dict, 0);
}

/* --- trace messages -------------------------------------------------------------------------- */

/* Fill a tuple from slots (steals them all). */
static PyObject *pack(PyObject **slots, int n) {
    PyObject *t = PyTuple_New(n);
    for (int i = 0; i < n; i++) {
        if (t != NULL) PyTuple_SET_ITEM(t, i, slots[i]);
        else Py_DECREF(slots[i]);
        slots[i] = NULL;
    }
    return t;
}

static void drop(PyObject **slots, int n) {
    for (int i = 0; i < n; i++) Py_CLEAR(slots[i]);
}

/* Defaults: str "" for string slots, b"" for bytes, 0 for numbers, {} / [] for collections. */
static int defaults(PyObject **slots, const char *kinds) {
    for (int i = 0; kinds[i]; i++) {
        switch (kinds[i]) {
        case 's': slots[i] = empty_str(); break;
        case 'b': slots[i] = PyBytes_FromStringAndSize("", 0); break;
        case 'i': slots[i] = PyLong_FromLong(0); break;
        case 'd': slots[i] = PyDict_New(); break;
        default: slots[i] = PyList_New(0); break;
        }
        if (slots[i] == NULL) return -1;
    }
    return 0;
}

/* Span.Event -> (time, name, attributes, dropped) */
static PyObject *span_event(Rd r) {
    PyObject *v[4] = {NULL};
    uint32_t seen = 0;
    if (defaults(v, "isdi")) goto fail;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (tag(&r, &f, &wt)) goto fail;
        if (f == 3 && wt == WT_LEN) {
            if (attribute(&r, v[2])) goto fail;
            continue;
        }
        if (once(&seen, f)) goto fail;
        if (f == 1 && wt == WT_I64) {
            if (fixed_nz(&r, 8, &v[0])) goto fail;
        } else if (f == 2 && wt == WT_LEN) {
            if (set(&v[1], str_nz(&r))) goto fail;
        } else if (f == 4 && wt == WT_VARINT) {
            if (u32_nz(&r, &v[3])) goto fail;
        } else {
            goto fail;
        }
    }
    return pack(v, 4);
fail:
    drop(v, 4);
    return NULL;
}

/* Span.Link -> (trace_id, span_id, trace_state, attributes, dropped, flags) */
static PyObject *span_link(Rd r) {
    PyObject *v[6] = {NULL};
    uint32_t seen = 0;
    if (defaults(v, "bbsdii")) goto fail;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (tag(&r, &f, &wt)) goto fail;
        if (f == 4 && wt == WT_LEN) {
            if (attribute(&r, v[3])) goto fail;
            continue;
        }
        if (once(&seen, f)) goto fail;
        if (f == 1 && wt == WT_LEN) {
            if (set(&v[0], bytes_nz(&r))) goto fail;
        } else if (f == 2 && wt == WT_LEN) {
            if (set(&v[1], bytes_nz(&r))) goto fail;
        } else if (f == 3 && wt == WT_LEN) {
            if (set(&v[2], str_nz(&r))) goto fail;
        } else if (f == 5 && wt == WT_VARINT) {
            if (u32_nz(&r, &v[4])) goto fail;
        } else if (f == 6 && wt == WT_I32) {
            if (fixed_nz(&r, 4, &v[5])) goto fail;
        } else {
            goto fail;
        }
    }
    return pack(v, 6);
fail:
    drop(v, 6);
    return NULL;
}

/* Status into span slots 14 (code) and 15 (message). */
static int status(Rd r, PyObject **code, PyObject **message) {
    uint32_t seen = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (tag(&r, &f, &wt) || once(&seen, f)) return -1;
        if (f == 2 && wt == WT_LEN) {
            if (set(message, str_nz(&r))) return -1;
        } else if (f == 3 && wt == WT_VARINT) {
            if (i32_nz(&r, code)) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int append(PyObject *list, PyObject *item) {
    if (item == NULL) return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

/* Span -> the 17-tuple described at the top. */
static PyObject *span(Rd r) {
    PyObject *v[18] = {NULL};
    uint32_t seen = 0;
    if (defaults(v, "bbsbsiiidililiisii")) goto fail;
    if (set(&v[17], PyLong_FromSsize_t(r.end - r.p))) goto fail; /* == upb's ByteSize(): canonical */
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt)) goto fail;
        if (f == 9 && wt == WT_LEN) {
            if (attribute(&r, v[8])) goto fail;
            continue;
        }
        if (f == 11 && wt == WT_LEN) {
            if (sub(&r, &s) || append(v[10], span_event(s))) goto fail;
            continue;
        }
        if (f == 13 && wt == WT_LEN) {
            if (sub(&r, &s) || append(v[12], span_link(s))) goto fail;
            continue;
        }
        if (once(&seen, f)) goto fail;
        int rc;
        switch (f) {
        case 1: rc = wt == WT_LEN ? set(&v[0], bytes_nz(&r)) : -1; break;
        case 2: rc = wt == WT_LEN ? set(&v[1], bytes_nz(&r)) : -1; break;
        case 3: rc = wt == WT_LEN ? set(&v[2], str_nz(&r)) : -1; break;
        case 4: rc = wt == WT_LEN ? set(&v[3], bytes_nz(&r)) : -1; break;
        case 5: rc = wt == WT_LEN ? set(&v[4], str_nz(&r)) : -1; break;
        case 6: rc = wt == WT_VARINT ? i32_nz(&r, &v[5]) : -1; break;
        case 7: rc = wt == WT_I64 ? fixed_nz(&r, 8, &v[6]) : -1; break;
        case 8: rc = wt == WT_I64 ? fixed_nz(&r, 8, &v[7]) : -1; break;
        case 10: rc = wt == WT_VARINT ? u32_nz(&r, &v[9]) : -1; break;
        case 12: rc = wt == WT_VARINT ? u32_nz(&r, &v[11]) : -1; break;
        case 14: rc = wt == WT_VARINT ? u32_nz(&r, &v[13]) : -1; break;
        case 15: rc = wt == WT_LEN && sub(&r, &s) == 0 ? status(s, &v[14], &v[15]) : -1; break;
        case 16: rc = wt == WT_I32 ? fixed_nz(&r, 4, &v[16]) : -1; break;
        default: rc = -1;
        }
        if (rc) goto fail;
    }
    return pack(v, 18);
fail:
    drop(v, 18);
    return NULL;
}

/* InstrumentationScope into name, version (attributes are left to upb: bail). */
static int scope(Rd r, PyObject **name, PyObject **version) {
    uint32_t seen = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t n;
        if (tag(&r, &f, &wt) || once(&seen, f)) return -1;
        if (f == 1 && wt == WT_LEN) {
            if (set(name, str_nz(&r))) return -1;
        } else if (f == 2 && wt == WT_LEN) {
            if (set(version, str_nz(&r))) return -1;
        } else if (f == 4 && wt == WT_VARINT) {
            if (varint(&r, &n) || n == 0 || n > UINT32_MAX) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ScopeSpans -> (name, version, schema_url, spans) */
static PyObject *scope_spans(Rd r) {
    PyObject *v[4] = {NULL};
    uint32_t seen = 0;
    if (defaults(v, "sssl")) goto fail;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt)) goto fail;
        if (f == 2 && wt == WT_LEN) {
            if (sub(&r, &s) || append(v[3], span(s))) goto fail;
            continue;
        }
        if (once(&seen, f)) goto fail;
        if (f == 1 && wt == WT_LEN) {
            if (sub(&r, &s) || scope(s, &v[0], &v[1])) goto fail;
        } else if (f == 3 && wt == WT_LEN) {
            if (set(&v[2], str_nz(&r))) goto fail;
        } else {
            goto fail;
        }
    }
    return pack(v, 4);
fail:
    drop(v, 4);
    return NULL;
}

/* Resource attributes into dict. */
static int resource(Rd r, PyObject *dict) {
    uint32_t seen = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t n;
        if (tag(&r, &f, &wt)) return -1;
        if (f == 1 && wt == WT_LEN) {
            if (attribute(&r, dict)) return -1;
        } else if (f == 2 && wt == WT_VARINT && once(&seen, f) == 0) {
            if (varint(&r, &n) || n == 0 || n > UINT32_MAX) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ResourceSpans -> (attributes, schema_url, scopes) */
static PyObject *resource_spans(Rd r) {
    PyObject *v[3] = {NULL};
    uint32_t seen = 0;
    if (defaults(v, "dsl")) goto fail;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt)) goto fail;
        if (f == 2 && wt == WT_LEN) {
            if (sub(&r, &s) || append(v[2], scope_spans(s))) goto fail;
            continue;
        }
        if (once(&seen, f)) goto fail;
        if (f == 1 && wt == WT_LEN) {
            if (sub(&r, &s) || resource(s, v[0])) goto fail;
        } else if (f == 3 && wt == WT_LEN) {
            if (set(&v[1], str_nz(&r))) goto fail;
        } else {
            goto fail;
        }
    }
    return pack(v, 3);
fail:
    drop(v, 3);
    return NULL;
}

PyDoc_STRVAR(parse_request_doc,
"parse_request(data) -> list | None\n\n"
"An ExportTraceServiceRequest as plain tuples (see the module source), or None where upb\n"
"must parse it (anything malformed or unusual).");

static PyObject *parse_request(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Keys keys;
    memset(&keys, 0, sizeof keys);
    Rd r = {(const unsigned char *)view.buf, (const unsigned char *)view.buf + view.len, &keys};
    PyObject *out = PyList_New(0);
    while (out != NULL && r.p < r.end) {
        uint32_t f;
        int wt;
        Rd s;
        if (tag(&r, &f, &wt) || f != 1 || wt != WT_LEN || sub(&r, &s) ||
            append(out, resource_spans(s)))
            Py_CLEAR(out);
    }
    for (int i = 0; i < KEY_SLOTS; i++) Py_XDECREF(keys.slot[i].str);
    PyBuffer_Release(&view);
    if (out != NULL) return out;
    if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError)) return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse_request", parse_request, METH_O, parse_request_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "relay.native._otlp",
    "OTLP ExportTraceServiceRequest bytes -> tuples (native twin of upb + relay.convert reads).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp(void) { return PyModuleDef_Init(&module); }
