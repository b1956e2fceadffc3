/* ReadableSpans -> Jaeger thrift Span bytes, compact (agent) or binary (collector) protocol.
 *
 * The native twin of relay/exporters/translate.py (span_to_jaeger) + jaeger_compat.encode_*:
 * the same fields, tags in the same order, the same bytes, written straight into a buffer
 * instead of building thrift objects first. The pure module stays the reference.
 *
 * Contract: encode_spans() returns one item per span, either the encoded bytes or None. None
 * means "not handled here": anything unusual (a value of a type other than the exact built-in
 * ones, an int out of i64 range, a string that is not valid UTF-8, a missing attribute, any
 * Python error) makes the caller run the pure path for that span, which then either encodes it
 * or reports its encode error. So native output is only ever produced where it equals the
 * pure output, and every odd case keeps the reference behaviour by construction.
 *
 * No global state: the lookup tables come in as arguments on every call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Binary-protocol type codes; the compact codes are derived from them. */
enum { T_BOOL = 2, T_DOUBLE = 4, T_I32 = 8, T_I64 = 10, T_STRING = 11, T_STRUCT = 12, T_LIST = 15 };
/* Jaeger TagType */
enum { V_STRING = 0, V_DOUBLE = 1, V_BOOL = 2, V_LONG = 3, V_BINARY = 4 };

#define NAMES(X) \
    X(context, "context") \
    X(trace_id, "trace_id") \
    X(span_id, "span_id") \
    X(parent, "parent") \
    X(name, "name") \
    X(links, "links") \
    X(attributes, "attributes") \
    X(trace_flags, "trace_flags") \
    X(start_time, "start_time") \
    X(end_time, "end_time") \
    X(instrumentation_scope, "instrumentation_scope") \
    X(version, "version") \
    X(kind_unspecified, "kind_unspecified") \
    X(kind, "kind") \
    X(status, "status") \
    X(status_code, "status_code") \
    X(description, "description") \
    X(trace_state_header, "trace_state_header") \
    X(trace_state, "trace_state") \
    X(to_header, "to_header") \
    X(dropped_attributes, "dropped_attributes") \
    X(dropped_events, "dropped_events") \
    X(dropped_links, "dropped_links") \
    X(events, "events") \
    X(timestamp, "timestamp") \
    X(get, "get") \
    X(p_name, "_name") \
    X(p_context, "_context") \
    X(p_parent, "_parent") \
    X(p_start_time, "_start_time") \
    X(p_end_time, "_end_time") \
    X(p_attributes, "_attributes") \
    X(p_events, "_events") \
    X(p_links, "_links") \
    X(p_kind, "_kind") \
    X(p_status, "_status") \
    X(p_instrumentation_scope, "_instrumentation_scope") \
    X(p_dropped, "_dropped") \
    X(ref_type, "opentracing.ref_type") \
    X(child_of, "child_of") \
    X(event, "event") \
    X(empty, "")

/* Module state: the interned attribute names and keys looked up per span (a C-string getattr
 * would allocate and hash a new str each time). Built once per module, never mutated. */
typedef struct {
#define DECLARE(field, text) PyObject *field;
    NAMES(DECLARE)
#undef DECLARE
} Names;

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

typedef struct {
    int compact;
    Buf out;        /* the span being written */
    Buf tags;       /* one tag list at a time (span tags, then each log's fields) */
    Py_ssize_t ntags;
    PyObject *json_value;   /* translate.json_value, for arrays and kvlists */
    PyObject *kind_names;   /* dict SpanKind -> str, translate._KIND_NAMES */
    PyObject *status_codes; /* dict StatusCode -> 1 (OK) | 2 (ERROR) */
    Names *s;
    PyObject *fast; /* the instance dict of the span being written when it is exactly a RelaySpan */
    PyObject *relay_span_type;
} Ctx;

#define ATTR(obj, field) PyObject_GetAttr((obj), c->s->field)

/* --- buffer ---------------------------------------------------------------------------------- */

static int buf_reserve(Buf *b, Py_ssize_t n) {
    if (n > PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->len + n <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const void *p, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static int put_byte(Buf *b, unsigned char c) { return put(b, &c, 1); }

static int put_varint(Buf *b, uint64_t n) {
    unsigned char tmp[10];
    int i = 0;
    while (n > 0x7F) {
        tmp[i++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    tmp[i++] = (unsigned char)n;
    return put(b, tmp, i);
}

static int put_be(Buf *b, uint64_t v, int size) {
    unsigned char tmp[8];
    for (int i = 0; i < size; i++) tmp[i] = (unsigned char)(v >> (8 * (size - 1 - i)));
    return put(b, tmp, size);
}

/* --- thrift primitives ----------------------------------------------------------------------- */

static unsigned char compact_type(int ttype, int boolval) {
    switch (ttype) {
    case T_BOOL: return boolval ? 1 : 2;
    case T_I32: return 5;
    case T_I64: return 6;
    case T_DOUBLE: return 7;
    case T_STRING: return 8;
    case T_LIST: return 9;
    default: return 12; /* T_STRUCT */
    }
}

/* A field header; for a bool field also its value (compact carries it in the header). */
static int field(Ctx *c, Buf *b, int *last, int fid, int ttype, int boolval) {
    if (c->compact) {
        unsigned char ct = compact_type(ttype, boolval);
        int delta = fid - *last;
        *last = fid;
        if (delta > 0 && delta <= 15) return put_byte(b, (unsigned char)((delta << 4) | ct));
        if (put_byte(b, ct) < 0) return -1;
        return put_varint(b, (uint64_t)(uint16_t)((fid << 1) ^ (fid >> 15)));
    }
    unsigned char head[3] = {(unsigned char)ttype, (unsigned char)(fid >> 8), (unsigned char)fid};
    if (put(b, head, 3) < 0) return -1;
    return ttype == T_BOOL ? put_byte(b, boolval ? 1 : 0) : 0;
}

static int put_i32(Ctx *c, Buf *b, int32_t v) {
    if (c->compact) return put_varint(b, (uint32_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31)));
    return put_be(b, (uint32_t)v, 4);
}

static int put_i64(Ctx *c, Buf *b, int64_t v) {
    if (c->compact) return put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
    return put_be(b, (uint64_t)v, 8);
}

static int put_double(Ctx *c, Buf *b, double d) {
    uint64_t bits;
    memcpy(&bits, &d, 8);
    if (!c->compact) return put_be(b, bits, 8);
    unsigned char tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = (unsigned char)(bits >> (8 * i));
    return put(b, tmp, 8);
}

static int put_bytes(Ctx *c, Buf *b, const char *s, Py_ssize_t n) {
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "string too long for thrift");
        return -1;
    }
    if (c->compact ? put_varint(b, (uint64_t)n) : put_be(b, (uint64_t)n, 4)) return -1;
    return put(b, s, n);
}

static int list_header(Ctx *c, Buf *b, int etype, Py_ssize_t n) {
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "list too long for thrift");
        return -1;
    }
    if (!c->compact) {
        if (put_byte(b, (unsigned char)etype) < 0) return -1;
        return put_be(b, (uint64_t)n, 4);
    }
    unsigned char ct = compact_type(etype, 0);
    if (n <= 14) return put_byte(b, (unsigned char)((n << 4) | ct));
    if (put_byte(b, (unsigned char)(0xF0 | ct)) < 0) return -1;
    return put_varint(b, (uint64_t)n);
}

static int stop(Buf *b) { return put_byte(b, 0); }

/* --- Python values --------------------------------------------------------------------------- */

/* The UTF-8 of an exact str; anything else is "not handled here". */
static const char *utf8(PyObject *s, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(s)) {
        PyErr_SetString(PyExc_TypeError, "not a str");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(s, n);
}

/* An exact int in i64 range. */
static int as_i64(PyObject *v, int64_t *out) {
    if (!PyLong_CheckExact(v)) {
        PyErr_SetString(PyExc_TypeError, "not an int");
        return -1;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "int out of i64 range");
        return -1;
    }
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)x;
    return 0;
}

/* A 64-bit id (an int, as int.to_bytes(8, "big") accepts it) as the signed i64 Jaeger carries. */
static int id64(PyObject *v, int64_t *out) {
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "id is not an int");
        return -1;
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = (int64_t)x;
    return 0;
}

/* A 128-bit trace id -> (high, low) signed. */
static int id128(PyObject *v, int64_t *high, int64_t *low) {
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "trace id is not an int");
        return -1;
    }
    static const int shift_bits = 64;
    PyObject *shift = PyLong_FromLong(shift_bits);
    if (shift == NULL) return -1;
    PyObject *top = PyNumber_Rshift(v, shift);
    Py_DECREF(shift);
    if (top == NULL) return -1;
    int rc = id64(top, high);
    Py_DECREF(top);
    if (rc < 0) return -1;
    if (_PyLong_Sign(v) < 0) {
        PyErr_SetString(PyExc_OverflowError, "negative trace id");
        return -1;
    }
    *low = (int64_t)PyLong_AsUnsignedLongLongMask(v);
    return PyErr_Occurred() ? -1 : 0;
}

/* getattr(obj, name, default) with a borrowed default; a new reference or NULL. */
static PyObject *getattr_or(PyObject *obj, PyObject *name, PyObject *dflt) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        Py_INCREF(dflt);
        return dflt;
    }
    return v;
}

/* d.get(key) for a small dict: an identity scan first (Enum keys hash in Python), then a
 * real lookup, so the answer is the lookup's. Borrowed; NULL with no error when absent. */
static PyObject *small_dict_get(PyObject *d, PyObject *key) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (k == key) return v;
    }
    return PyDict_GetItemWithError(d, key);
}

/* A span attribute: for an exact RelaySpan the field its ReadableSpan property returns, read
 * from the instance dict (a property call costs ~50 ns); otherwise, or when the field is not
 * there, the public attribute. ``attributes``/``events``/``links`` give the dict/list the
 * property wraps (MappingProxyType / tuple): the same items in the same order. */
static PyObject *span_get(Ctx *c, PyObject *span, PyObject *public_name, PyObject *private_name) {
    if (c->fast != NULL) {
        PyObject *v = PyDict_GetItemWithError(c->fast, private_name);
        if (v != NULL) return Py_NewRef(v);
        if (PyErr_Occurred()) return NULL;
    }
    return PyObject_GetAttr(span, public_name);
}

#define SPAN(field) span_get(c, span, c->s->field, c->s->p_##field)

/* getattr(span, name, dflt) for an instance attribute, through the instance dict when fast. */
static PyObject *span_get_or(Ctx *c, PyObject *span, PyObject *name, PyObject *dflt) {
    if (c->fast != NULL) {
        PyObject *v = PyDict_GetItemWithError(c->fast, name);
        if (v != NULL) return Py_NewRef(v);
        if (PyErr_Occurred()) return NULL;
    }
    return getattr_or(span, name, dflt);
}

/* --- tags ------------------------------------------------------------------------------------ */

static int tag_head(Ctx *c, const char *key, Py_ssize_t klen, int vtype, int *last) {
    Buf *b = &c->tags;
    *last = 0;
    c->ntags++;
    if (field(c, b, last, 1, T_STRING, 0) || put_bytes(c, b, key, klen)) return -1;
    if (field(c, b, last, 2, T_I32, 0) || put_i32(c, b, vtype)) return -1;
    return 0;
}

static int tag_str(Ctx *c, const char *key, Py_ssize_t klen, const char *s, Py_ssize_t n) {
    int last;
    if (tag_head(c, key, klen, V_STRING, &last)) return -1;
    if (field(c, &c->tags, &last, 3, T_STRING, 0) || put_bytes(c, &c->tags, s, n)) return -1;
    return stop(&c->tags);
}

static int tag_pystr(Ctx *c, const char *key, Py_ssize_t klen, PyObject *value) {
    Py_ssize_t n;
    const char *s = utf8(value, &n);
    return s == NULL ? -1 : tag_str(c, key, klen, s, n);
}

static int tag_long(Ctx *c, const char *key, Py_ssize_t klen, int64_t v) {
    int last;
    if (tag_head(c, key, klen, V_LONG, &last)) return -1;
    if (field(c, &c->tags, &last, 6, T_I64, 0) || put_i64(c, &c->tags, v)) return -1;
    return stop(&c->tags);
}

static int tag_bool(Ctx *c, const char *key, Py_ssize_t klen, int v) {
    int last;
    if (tag_head(c, key, klen, V_BOOL, &last)) return -1;
    if (field(c, &c->tags, &last, 5, T_BOOL, v)) return -1;
    return stop(&c->tags);
}

static int tag_double(Ctx *c, const char *key, Py_ssize_t klen, double v) {
    int last;
    if (tag_head(c, key, klen, V_DOUBLE, &last)) return -1;
    if (field(c, &c->tags, &last, 4, T_DOUBLE, 0) || put_double(c, &c->tags, v)) return -1;
    return stop(&c->tags);
}

static int tag_binary(Ctx *c, const char *key, Py_ssize_t klen, PyObject *value) {
    int last;
    if (tag_head(c, key, klen, V_BINARY, &last)) return -1;
    if (field(c, &c->tags, &last, 7, T_STRING, 0)) return -1;
    if (put_bytes(c, &c->tags, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))) return -1;
    return stop(&c->tags);
}

/* translate.attribute_tag, for the exact built-in types only. */
static int attribute_tag(Ctx *c, PyObject *key, PyObject *value) {
    Py_ssize_t klen;
    const char *k = utf8(key, &klen);
    if (k == NULL) return -1;
    if (PyUnicode_CheckExact(value)) return tag_pystr(c, k, klen, value);
    if (PyBool_Check(value)) return tag_bool(c, k, klen, value == Py_True);
    if (PyLong_CheckExact(value)) {
        int64_t v;
        return as_i64(value, &v) ? -1 : tag_long(c, k, klen, v);
    }
    if (PyFloat_CheckExact(value)) return tag_double(c, k, klen, PyFloat_AS_DOUBLE(value));
    if (PyBytes_CheckExact(value)) return tag_binary(c, k, klen, value);
    if (value == Py_None) return tag_str(c, k, klen, "", 0);
    if (PyTuple_CheckExact(value) || PyList_CheckExact(value) || PyDict_CheckExact(value)) {
        PyObject *text = PyObject_CallOneArg(c->json_value, value);
        if (text == NULL) return -1;
        int rc = tag_pystr(c, k, klen, text);
        Py_DECREF(text);
        return rc;
    }
    PyErr_SetString(PyExc_TypeError, "attribute value of another type");
    return -1;
}

/* translate._tags: every attribute of a mapping, in its order. */
static int attribute_tags(Ctx *c, PyObject *attributes) {
    int truth = PyObject_IsTrue(attributes);
    if (truth <= 0) return truth;
    if (PyDict_CheckExact(attributes)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(attributes, &pos, &key, &value)) {
            if (attribute_tag(c, key, value)) return -1;
        }
        return 0;
    }
    PyObject *items = PyMapping_Items(attributes);
    if (items == NULL) return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items) && rc == 0; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "items() of another shape");
            rc = -1;
        } else {
            rc = attribute_tag(c, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        }
    }
    Py_DECREF(items);
    return rc;
}

/* The list<Tag> gathered in c->tags as field ``fid`` of ``b``; nothing when ``omit_empty``. */
static int flush_tags(Ctx *c, Buf *b, int *last, int fid, int omit_empty) {
    if (c->ntags == 0 && omit_empty) return 0;
    if (field(c, b, last, fid, T_LIST, 0) || list_header(c, b, T_STRUCT, c->ntags)) return -1;
    if (put(b, c->tags.data, c->tags.len)) return -1;
    c->tags.len = 0;
    c->ntags = 0;
    return 0;
}

/* --- span parts ------------------------------------------------------------------------------ */

#define LIT(s) s, (Py_ssize_t)(sizeof(s) - 1)

/* translate.scope_tags */
static int scope_tags(Ctx *c, PyObject *span) {
    PyObject *scope = SPAN(instrumentation_scope);
    if (scope == NULL) return -1;
    int rc = -1;
    PyObject *name = NULL, *version = NULL;
    if (scope == Py_None) {
        rc = 0;
        goto done;
    }
    name = ATTR(scope, name);
    version = name ? ATTR(scope, version) : NULL;
    if (version == NULL) goto done;
    int has_name = PyObject_IsTrue(name), has_version = PyObject_IsTrue(version);
    if (has_name < 0 || has_version < 0) goto done;
    if (has_name && tag_pystr(c, LIT("otel.scope.name"), name)) goto done;
    if (has_version && tag_pystr(c, LIT("otel.scope.version"), version)) goto done;
    if (has_name && tag_pystr(c, LIT("otel.library.name"), name)) goto done;
    if (has_version && tag_pystr(c, LIT("otel.library.version"), version)) goto done;
    rc = 0;
done:
    Py_XDECREF(version);
    Py_XDECREF(name);
    Py_DECREF(scope);
    return rc;
}

/* translate._status_tags: span.kind, otel.status_code, error, otel.status_description. */
static int status_tags(Ctx *c, PyObject *span) {
    PyObject *unspecified = span_get_or(c, span, c->s->kind_unspecified, Py_False);
    if (unspecified == NULL) return -1;
    int skip_kind = PyObject_IsTrue(unspecified);
    Py_DECREF(unspecified);
    if (skip_kind < 0) return -1;
    if (!skip_kind) {
        PyObject *kind = SPAN(kind);
        if (kind == NULL) return -1;
        PyObject *name = small_dict_get(c->kind_names, kind); /* borrowed */
        Py_DECREF(kind);
        if (name == NULL && PyErr_Occurred()) return -1;
        if (name != NULL && tag_pystr(c, LIT("span.kind"), name)) return -1;
    }
    PyObject *status = SPAN(status);
    if (status == NULL) return -1;
    int rc = -1;
    PyObject *code = ATTR(status, status_code);
    PyObject *description = code ? ATTR(status, description) : NULL;
    if (description == NULL) goto done;
    PyObject *which = small_dict_get(c->status_codes, code); /* borrowed */
    if (which == NULL && PyErr_Occurred()) goto done;
    long number = which ? PyLong_AsLong(which) : 0;
    if (number == 1 && tag_str(c, LIT("otel.status_code"), LIT("OK"))) goto done;
    if (number == 2 && (tag_str(c, LIT("otel.status_code"), LIT("ERROR")) ||
                        tag_bool(c, LIT("error"), 1)))
        goto done;
    int has_description = PyObject_IsTrue(description);
    if (has_description < 0) goto done;
    if (has_description && tag_pystr(c, LIT("otel.status_description"), description)) goto done;
    rc = 0;
done:
    Py_XDECREF(description);
    Py_XDECREF(code);
    Py_DECREF(status);
    return rc;
}

static int dropped_tag(Ctx *c, PyObject *span, PyObject *attr, int index, const char *key, Py_ssize_t klen) {
    PyObject *count = NULL;
    PyObject *dropped = c->fast ? PyDict_GetItemWithError(c->fast, c->s->p_dropped) : NULL; /* RelaySpan */
    if (dropped != NULL && PyTuple_CheckExact(dropped) && PyTuple_GET_SIZE(dropped) == 3) {
        count = Py_NewRef(PyTuple_GET_ITEM(dropped, index));
    } else if (!PyErr_Occurred()) {
        count = PyObject_GetAttr(span, attr);
    }
    if (count == NULL) return -1;
    int rc = PyObject_IsTrue(count);
    if (rc > 0) {
        int64_t v;
        rc = as_i64(count, &v) ? -1 : tag_long(c, key, klen, v);
    }
    Py_DECREF(count);
    return rc;
}

/* translate._trailing_tags: w3c.tracestate, then the dropped counts. */
static int trailing_tags(Ctx *c, PyObject *span, PyObject *context) {
    PyObject *header = span_get_or(c, span, c->s->trace_state_header, c->s->empty);
    if (header == NULL) return -1;
    int has = PyObject_IsTrue(header);
    if (has == 0) {
        PyObject *state = ATTR(context, trace_state);
        has = state ? PyObject_IsTrue(state) : -1;
        if (has > 0) {
            Py_SETREF(header, PyObject_CallMethodNoArgs(state, c->s->to_header));
            has = header ? PyObject_IsTrue(header) : -1;
        }
        Py_XDECREF(state);
    }
    int rc = has < 0 ? -1 : (has ? tag_pystr(c, LIT("w3c.tracestate"), header) : 0);
    Py_XDECREF(header);
    if (rc) return -1;
    if (dropped_tag(c, span, c->s->dropped_attributes, 0, LIT("otel.dropped_attributes_count"))) return -1;
    if (dropped_tag(c, span, c->s->dropped_events, 1, LIT("otel.dropped_events_count"))) return -1;
    return dropped_tag(c, span, c->s->dropped_links, 2, LIT("otel.dropped_links_count"));
}

/* translate._references: list<SpanRef> as field 6, when there are links. */
static int references(Ctx *c, PyObject *span, int *last) {
    PyObject *links = SPAN(links);
    if (links == NULL) return -1;
    PyObject *seq = PySequence_Fast(links, "links is not a sequence");
    Py_DECREF(links);
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = -1;
    if (n == 0) {
        rc = 0;
        goto done;
    }
    if (field(c, &c->out, last, 6, T_LIST, 0) || list_header(c, &c->out, T_STRUCT, n)) goto done;
    PyObject *ref_type_key = c->s->ref_type, *child_of = c->s->child_of;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *link = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *context = ATTR(link, context);
        PyObject *trace_id = context ? ATTR(context, trace_id) : NULL;
        PyObject *span_id = trace_id ? ATTR(context, span_id) : NULL;
        PyObject *attributes = span_id ? ATTR(link, attributes) : NULL;
        int64_t high = 0, low = 0, sid = 0;
        int child = 0, ok = attributes != NULL && id128(trace_id, &high, &low) == 0 &&
                                id64(span_id, &sid) == 0;
        if (ok && attributes != Py_None) {
            PyObject *ref = PyObject_CallMethodOneArg(attributes, c->s->get, ref_type_key);
            child = ref ? PyObject_RichCompareBool(ref, child_of, Py_EQ) : -1;
            Py_XDECREF(ref);
            ok = child >= 0;
        }
        Py_XDECREF(attributes);
        Py_XDECREF(span_id);
        Py_XDECREF(trace_id);
        Py_XDECREF(context);
        int sl = 0;
        Buf *b = &c->out;
        if (!ok || field(c, b, &sl, 1, T_I32, 0) || put_i32(c, b, child ? 0 : 1) ||
            field(c, b, &sl, 2, T_I64, 0) || put_i64(c, b, low) ||
            field(c, b, &sl, 3, T_I64, 0) || put_i64(c, b, high) ||
            field(c, b, &sl, 4, T_I64, 0) || put_i64(c, b, sid) || stop(b)) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

/* Floor division by 1000 of an exact int that fits i64. */
static int micros(PyObject *ns, int64_t *out) {
    int64_t v;
    if (as_i64(ns, &v)) return -1;
    int64_t q = v / 1000;
    if (v % 1000 < 0) q--;
    *out = q;
    return 0;
}

/* One event -> one Log (timestamp, fields). */
static int log_entry(Ctx *c, PyObject *event) {
    PyObject *name = ATTR(event, name);
    PyObject *attributes = name ? ATTR(event, attributes) : NULL;
    PyObject *timestamp = attributes ? ATTR(event, timestamp) : NULL;
    int rc = -1;
    int64_t ts;
    if (timestamp == NULL || micros(timestamp, &ts)) goto done;
    int has_name = PyObject_IsTrue(name);
    int has_attrs = has_name > 0 ? PyObject_IsTrue(attributes) : 0;
    if (has_name < 0 || has_attrs < 0) goto done;
    int has_event_key = 0;
    if (has_attrs) {
        has_event_key = PySequence_Contains(attributes, c->s->event);
        if (has_event_key < 0) goto done;
    }
    if (has_name && !has_event_key && tag_pystr(c, LIT("event"), name)) goto done;
    if (attributes != Py_None && attribute_tags(c, attributes)) goto done;
    int last = 0;
    if (field(c, &c->out, &last, 1, T_I64, 0) || put_i64(c, &c->out, ts)) goto done;
    if (flush_tags(c, &c->out, &last, 2, 0) || stop(&c->out)) goto done;
    rc = 0;
done:
    Py_XDECREF(timestamp);
    Py_XDECREF(attributes);
    Py_XDECREF(name);
    return rc;
}

/* translate._logs: list<Log> as field 11, when there are events. */
static int logs(Ctx *c, PyObject *span, int *last) {
    PyObject *events = SPAN(events);
    if (events == NULL) return -1;
    PyObject *seq = PySequence_Fast(events, "events is not a sequence");
    Py_DECREF(events);
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (n > 0) {
        rc = field(c, &c->out, last, 11, T_LIST, 0) || list_header(c, &c->out, T_STRUCT, n) ? -1 : 0;
        for (Py_ssize_t i = 0; i < n && rc == 0; i++) rc = log_entry(c, PySequence_Fast_GET_ITEM(seq, i));
    }
    Py_DECREF(seq);
    return rc;
}

/* (start_time or 0) // 1000 and (end_time or start_time or 0) // 1000, as non-negative ints. */
static int times(Ctx *c, PyObject *span, int64_t *start_us, int64_t *end_us) {
    PyObject *start = SPAN(start_time);
    PyObject *end = start ? SPAN(end_time) : NULL;
    int rc = -1;
    if (end == NULL) goto done;
    int start_true = PyObject_IsTrue(start), end_true = PyObject_IsTrue(end);
    if (start_true < 0 || end_true < 0) goto done;
    unsigned long long s = 0, e = 0;
    if (start_true) {
        if (!PyLong_CheckExact(start) || _PyLong_Sign(start) < 0) goto fallback;
        s = PyLong_AsUnsignedLongLong(start);
        if (PyErr_Occurred()) goto done;
    }
    if (end_true) {
        if (!PyLong_CheckExact(end) || _PyLong_Sign(end) < 0) goto fallback;
        e = PyLong_AsUnsignedLongLong(end);
        if (PyErr_Occurred()) goto done;
    } else {
        e = s;
    }
    *start_us = (int64_t)(s / 1000);
    *end_us = (int64_t)(e / 1000);
    rc = 0;
    goto done;
fallback:
    PyErr_SetString(PyExc_TypeError, "times of another kind");
done:
    Py_XDECREF(end);
    Py_XDECREF(start);
    return rc;
}

/* Fields 1-5 of a Span: ids and the operation name. */
static int span_head(Ctx *c, PyObject *span, PyObject *context, int *last) {
    int64_t high, low, sid, parent_sid = 0;
    PyObject *trace_id = ATTR(context, trace_id);
    if (trace_id == NULL) return -1;
    int rc = id128(trace_id, &high, &low);
    Py_DECREF(trace_id);
    PyObject *span_id = rc ? NULL : ATTR(context, span_id);
    if (span_id == NULL) return -1;
    rc = id64(span_id, &sid);
    Py_DECREF(span_id);
    PyObject *parent = rc ? NULL : SPAN(parent);
    if (parent == NULL) return -1;
    if (parent != Py_None) {
        PyObject *parent_id = ATTR(parent, span_id);
        rc = parent_id ? id64(parent_id, &parent_sid) : -1;
        Py_XDECREF(parent_id);
    }
    Py_DECREF(parent);
    if (rc) return -1;
    PyObject *name = SPAN(name);
    if (name == NULL) return -1;
    Py_ssize_t nlen;
    const char *n = utf8(name, &nlen);
    Buf *b = &c->out;
    rc = n == NULL || field(c, b, last, 1, T_I64, 0) || put_i64(c, b, low) ||
         field(c, b, last, 2, T_I64, 0) || put_i64(c, b, high) ||
         field(c, b, last, 3, T_I64, 0) || put_i64(c, b, sid) ||
         field(c, b, last, 4, T_I64, 0) || put_i64(c, b, parent_sid) ||
         field(c, b, last, 5, T_STRING, 0) || put_bytes(c, b, n, nlen) ? -1 : 0;
    Py_DECREF(name);
    return rc;
}

static int span_flags(Ctx *c, PyObject *context, int *last) {
    PyObject *flags = ATTR(context, trace_flags);
    if (flags == NULL) return -1;
    if (!PyLong_Check(flags)) {
        Py_DECREF(flags);
        PyErr_SetString(PyExc_TypeError, "trace_flags is not an int");
        return -1;
    }
    unsigned long long bits = PyLong_AsUnsignedLongLongMask(flags);
    Py_DECREF(flags);
    if (PyErr_Occurred()) return -1;
    return field(c, &c->out, last, 7, T_I32, 0) || put_i32(c, &c->out, (int32_t)(bits & 1)) ? -1 : 0;
}

/* translate.span_to_jaeger + encode, into c->out. */
static int encode_span_body(Ctx *c, PyObject *span);

static int encode_span(Ctx *c, PyObject *span) {
    c->fast = NULL;
    if (c->relay_span_type != Py_None && (PyObject *)Py_TYPE(span) == c->relay_span_type) {
        c->fast = PyObject_GenericGetDict(span, NULL);
        if (c->fast == NULL) return -1;
    }
    int rc = encode_span_body(c, span);
    Py_CLEAR(c->fast);
    return rc;
}

static int encode_span_body(Ctx *c, PyObject *span) {
    c->out.len = 0;
    c->tags.len = 0;
    c->ntags = 0;
    PyObject *context = SPAN(context);
    if (context == NULL) return -1;
    int last = 0, rc = -1;
    int64_t start_us, end_us;
    if (context == Py_None) {
        PyErr_SetString(PyExc_TypeError, "span without a context");
        goto done;
    }
    if (span_head(c, span, context, &last) || references(c, span, &last)) goto done;
    if (span_flags(c, context, &last) || times(c, span, &start_us, &end_us)) goto done;
    Buf *b = &c->out;
    if (field(c, b, &last, 8, T_I64, 0) || put_i64(c, b, start_us)) goto done;
    if (field(c, b, &last, 9, T_I64, 0) || put_i64(c, b, end_us - start_us)) goto done;
    PyObject *attributes = SPAN(attributes);
    if (attributes == NULL) goto done;
    int arc = scope_tags(c, span) || attribute_tags(c, attributes);
    Py_DECREF(attributes);
    if (arc || status_tags(c, span) || trailing_tags(c, span, context)) goto done;
    if (flush_tags(c, b, &last, 10, 1) || logs(c, span, &last) || stop(b)) goto done;
    rc = 0;
done:
    Py_DECREF(context);
    return rc;
}

/* --- module ---------------------------------------------------------------------------------- */

PyDoc_STRVAR(encode_spans_doc,
"encode_spans(spans, compact, json_value, kind_names, status_codes, relay_span_type)\n"
"-> list[bytes | None]\n\n"
"Each span as one Jaeger thrift Span struct (compact protocol if ``compact``, else binary);\n"
"None where the span needs the pure path.");

static PyObject *encode_spans(PyObject *self, PyObject *args) {
    PyObject *spans, *json_value, *kind_names, *status_codes, *relay_span_type;
    int compact;
    if (!PyArg_ParseTuple(args, "OpOO!O!O:encode_spans", &spans, &compact, &json_value,
                          &PyDict_Type, &kind_names, &PyDict_Type, &status_codes, &relay_span_type))
        return NULL;
    PyObject *seq = PySequence_Fast(spans, "spans must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyList_New(n);
    Ctx c = {compact, {NULL, 0, 0}, {NULL, 0, 0}, 0, json_value, kind_names, status_codes,
             (Names *)PyModule_GetState(self), NULL, relay_span_type};
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        PyObject *item;
        if (encode_span(&c, PySequence_Fast_GET_ITEM(seq, i)) == 0) {
            item = PyBytes_FromStringAndSize(c.out.data, c.out.len);
        } else if (PyErr_ExceptionMatches(PyExc_MemoryError) ||
                   PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            item = NULL;
        } else {
            PyErr_Clear();
            item = Py_NewRef(Py_None);
        }
        if (item == NULL) {
            Py_CLEAR(result);
        } else {
            PyList_SET_ITEM(result, i, item);
        }
    }
    PyMem_Free(c.out.data);
    PyMem_Free(c.tags.data);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_spans", encode_spans, METH_VARARGS, encode_spans_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m) {
    Names *s = (Names *)PyModule_GetState(m);
#define INTERN(field, text) \
    if ((s->field = PyUnicode_InternFromString(text)) == NULL) return -1;
    NAMES(INTERN)
#undef INTERN
    return 0;
}

static int traverse_module(PyObject *m, visitproc visit, void *arg) {
    Names *s = (Names *)PyModule_GetState(m);
#define VISIT(field, text) Py_VISIT(s->field);
    NAMES(VISIT)
#undef VISIT
    return 0;
}

static int clear_module(PyObject *m) {
    Names *s = (Names *)PyModule_GetState(m);
#define CLEAR(field, text) Py_CLEAR(s->field);
    NAMES(CLEAR)
#undef CLEAR
    return 0;
}

static void free_module(void *m) { clear_module((PyObject *)m); }

static struct PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "relay.native._thrift",
    "ReadableSpans -> Jaeger thrift bytes (native twin of relay.exporters.translate).",
    sizeof(Names), methods, slots, traverse_module, clear_module, free_module,
};

PyMODINIT_FUNC PyInit__thrift(void) { return PyModuleDef_Init(&module); }
