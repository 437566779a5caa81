/* Compiled kernels for word-vector pooling: the default token pattern with
 * its vocabulary lookup, pooled sums / extremes of vector rows, and BERT's
 * whole words for StaticEmbedder's ids.
 *
 * Each function does, in one pass over its input with the GIL released, what
 * the numpy code of _tokenize.py and _pooling.py does in several: the results
 * are the same (tests compare the two on every path). The module is optional:
 * without a C compiler the package installs without it and runs the numpy
 * code. Built against CPython's stable ABI (3.11+), so that one wheel serves
 * every later Python. Buffers come from numpy; their dtypes and shapes are
 * checked here, so that a wrong call raises instead of reading out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#define restrict __restrict
#endif

/* Character classes, as _tokenize.py numbers them. */
#define CLASS_WORD 1
#define CLASS_OTHER 4
#define N_CODE_POINTS 0x110000

static const uint64_t LENGTH_MIX = 0x9E3779B97F4A7C15ULL;
static const uint64_t MIX = 0xFF51AFD7ED558CCDULL;

/* Whether a buffer's format is the one its item size stands for here: bytes
 * (1), float16 (2), float32 (4), int64 (8); a 16-byte item is a slot (a struct). */
static int
format_fits(const char *format, Py_ssize_t itemsize)
{
    if (itemsize == 16) {
        return 1;
    }
    if (format == NULL) {
        return itemsize == 1;
    }
    if (*format == '@' || *format == '=') {
        format++;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    else if (*format == '<') {
        format++;
    }
#endif
    if (format[0] == '\0' || format[1] != '\0') {
        return 0;
    }
    switch (itemsize) {
    case 1:
        return format[0] == 'B' || format[0] == 'b' || format[0] == 'c';
    case 2:
        return format[0] == 'e';
    case 4:
        return format[0] == 'f';
    case 8:
        return format[0] == 'q' || format[0] == 'l';
    default:
        return 0;
    }
}

/* A C-contiguous buffer of ndim dimensions whose items are of the kind its
 * item size stands for (format_fits), aligned for them; else an error. */
static int
get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int ndim, int writable,
           const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1;
    }
    Py_ssize_t alignment = itemsize < 8 ? itemsize : 8;
    if (view->itemsize != itemsize || view->ndim != ndim ||
        !format_fits(view->format, itemsize) || (uintptr_t)view->buf % alignment != 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s: expected an aligned %d-d array of %s", name, ndim,
                     itemsize == 1   ? "bytes"
                     : itemsize == 2 ? "float16"
                     : itemsize == 4 ? "float32"
                     : itemsize == 8 ? "int64"
                                     : "slots");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* get_buffer for objects[0..n), one dimension each (writable from
 * first_writable on); returns how many were acquired: n when all were. */
static int
get_buffers(PyObject **objects, Py_buffer *views, const Py_ssize_t *itemsizes,
            const char **names, int n, int first_writable)
{
    int k = 0;
    while (k < n &&
           get_buffer(objects[k], &views[k], itemsizes[k], 1, k >= first_writable, names[k]) == 0) {
        k++;
    }
    return k;
}

static void
release_buffers(Py_buffer *views, int n)
{
    while (n > 0) {
        PyBuffer_Release(&views[--n]);
    }
}

/* ---------------------------------------------------------------- tokens */

/* One slot of the vocabulary's open-addressing table (``_WordTable.slots``). */
typedef struct {
    uint64_t hash;
    int32_t row;    /* -1: an empty slot */
    int32_t nbytes; /* the word's length in UTF-8 bytes */
} Slot;

typedef struct {
    const uint8_t *classes; /* class of every code point (N_CODE_POINTS) */
    const Slot *slots;
    const int64_t *starts; /* where each slot's word lies in words */
    uint64_t mask;         /* slots - 1 (a power of two) */
    const uint8_t *words;  /* the words' UTF-8 bytes */
    Py_ssize_t words_size;
} Vocabulary;

/* The vocabulary of a call's slots, starts and words (classes: NULL or the
 * class table), checked for sizes that agree; else an error naming the call. */
static int
open_vocabulary(Vocabulary *v, const Py_buffer *classes, const Py_buffer *slots,
                const Py_buffer *starts, const Py_buffer *words, const char *call)
{
    Py_ssize_t n_slots = slots->len / (Py_ssize_t)sizeof(Slot);
    if ((classes != NULL && classes->len != N_CODE_POINTS) || n_slots < 1 ||
        (n_slots & (n_slots - 1)) != 0 || starts->len / 8 != n_slots) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent vocabulary tables", call);
        return -1;
    }
    *v = (Vocabulary){classes ? classes->buf : NULL, slots->buf, starts->buf,
                      (uint64_t)n_slots - 1, words->buf, words->len};
    return 0;
}

static inline uint64_t
mix(uint64_t h)
{
    h ^= h >> 33;
    h *= MIX;
    h ^= h >> 33;
    return h;
}

/* The little-endian value of the n <= 8 bytes at p; limit is the end of
 * the readable memory. */
static inline uint64_t
load_le(const uint8_t *p, Py_ssize_t n, const uint8_t *limit)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (limit - p >= 8) {
        memcpy(&v, p, 8);
        return n >= 8 ? v : v & ((1ULL << (8 * n)) - 1);
    }
#endif
    for (Py_ssize_t i = 0; i < n; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* _span_hashes of _tokenize.py for one span. */
static inline uint64_t
span_hash(const uint8_t *p, Py_ssize_t n, const uint8_t *limit)
{
    uint64_t h = mix(load_le(p, n < 8 ? n : 8, limit) ^ ((uint64_t)n * LENGTH_MIX));
    for (Py_ssize_t offset = 8; offset < n; offset += 8) {
        Py_ssize_t left = n - offset;
        h = mix(h ^ load_le(p + offset, left < 8 ? left : 8, limit));
    }
    return h;
}

static inline int64_t
find(const Vocabulary *v, uint64_t h, const uint8_t *p, Py_ssize_t n)
{
    for (uint64_t probe = 0, at = h & v->mask; probe <= v->mask; probe++, at = (at + 1) & v->mask) {
        const Slot *slot = &v->slots[at];
        if (slot->row < 0) {
            return -1;
        }
        if (slot->hash == h) {
            /* Hashes are unique in the table: this slot or none. Spans of at
             * most 8 bytes with equal hashes and lengths are equal. */
            if (slot->nbytes != n) {
                return -1;
            }
            if (n > 8) {
                int64_t start = v->starts[at];
                if (start < 0 || start > v->words_size - n ||
                    memcmp(v->words + start, p, (size_t)n) != 0) {
                    return -1;
                }
            }
            return slot->row;
        }
    }
    return -1;
}

/* The code point of the UTF-8 sequence at p and its length; a sequence cut by
 * the end (left bytes, not from CPython) is one byte. */
static inline uint32_t
decode(const uint8_t *p, Py_ssize_t left, int *length)
{
    uint8_t b = p[0];
    int n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (n > left) {
        n = 1;
    }
    *length = n;
    switch (n) {
    case 1:
        return b;
    case 2:
        return ((uint32_t)(b & 0x1F) << 6) | (p[1] & 0x3F);
    case 3:
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
        return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
               ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    }
}

/* Tokens are looked up in batches of this many: their slots are fetched
 * while the next ones are found, and the buffers do not grow with a document. */
#define TOKEN_BATCH 4096

/* The working space of one call, and where its rows go. */
typedef struct {
    Py_ssize_t longest;  /* bytes of the longest document */
    uint8_t *lower;      /* an ASCII document in lowercase, and 16 zero bytes */
    uint32_t *cp;        /* a document beyond ASCII: code points (allocated at the first), */
    uint8_t *cls;        /* their classes */
    Py_ssize_t *at;      /* and where each starts in the text, and the end */
    const uint8_t *text; /* the document as tokenised, */
    const uint8_t *limit;/* and the end of the memory readable after it */
    uint64_t hash[TOKEN_BATCH]; /* the tokens waiting for their lookup: hash, */
    Py_ssize_t start[TOKEN_BATCH], nbytes[TOKEN_BATCH]; /* first byte, length */
    Py_ssize_t waiting;
    int64_t *ids;        /* the rows found, */
    Py_ssize_t capacity, count;
    int known_only;      /* only the words' */
    int full, no_memory;
} Tokenizer;

static Tokenizer *
tokenizer_new(Py_ssize_t longest)
{
    Tokenizer *s = calloc(1, sizeof(Tokenizer));
    if (s == NULL) {
        return NULL;
    }
    s->longest = longest;
    s->lower = calloc(longest + 16, 1);
    if (s->lower == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

static void
tokenizer_free(Tokenizer *s)
{
    if (s != NULL) {
        free(s->lower);
        free(s->cp);
        free(s->cls);
        free(s->at);
        free(s);
    }
}

/* The rows of the waiting tokens, written out. */
static void
flush(const Vocabulary *v, Tokenizer *s)
{
    if (s->waiting > s->capacity - s->count) {
        s->full = 1;
    }
    else {
        for (Py_ssize_t k = 0; k < s->waiting; k++) {
            int64_t id = find(v, s->hash[k], s->text + s->start[k], s->nbytes[k]);
            s->ids[s->count] = id;
            s->count += id >= 0 || !s->known_only;
        }
    }
    s->waiting = 0;
}

#if defined(__GNUC__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE static inline
#endif

/* A token's hash and place, as the k-th waiting one; its slot is fetched
 * while the next tokens are found. */
ALWAYS_INLINE void
record(const Vocabulary *v, Tokenizer *s, const uint8_t *text, const uint8_t *limit,
       Py_ssize_t first, Py_ssize_t end, Py_ssize_t *k)
{
    uint64_t h = span_hash(text + first, end - first, limit);
#if defined(__GNUC__)
    __builtin_prefetch(&v->slots[h & v->mask]);
#endif
    s->hash[*k] = h;
    s->start[*k] = first;
    s->nbytes[*k] = end - first;
    if (++*k == TOKEN_BATCH) {
        s->waiting = *k;
        flush(v, s);
        *k = 0;
    }
}

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>

/* Where a run of ASCII word characters ([0-9A-Za-z_], \w in ASCII) that goes
 * on at j ends, sixteen bytes at a time while they are readable (before
 * limit): one comparison per sixteen characters instead of a branch on each,
 * whose misprediction at each word's end cost most of the tokenising. Stops
 * at n or earlier; the caller's loop finishes the run byte by byte. */
static inline Py_ssize_t
ascii_run_end(const uint8_t *text, Py_ssize_t j, Py_ssize_t n, const uint8_t *limit)
{
    while (j < n && limit - (text + j) >= 16) {
        __m128i c = _mm_loadu_si128((const __m128i *)(text + j));
        __m128i folded = _mm_or_si128(c, _mm_set1_epi8(0x20)); /* A-Z to a-z */
        __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(folded, _mm_set1_epi8('a' - 1)),
                                       _mm_cmpgt_epi8(_mm_set1_epi8('z' + 1), folded));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)),
                                      _mm_cmpgt_epi8(_mm_set1_epi8('9' + 1), c));
        __m128i under = _mm_cmpeq_epi8(c, _mm_set1_epi8('_'));
        unsigned word = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), under));
        unsigned other = ~word & 0xFFFF;
        if (n - j < 16) {
            other |= 0xFFFFu << (n - j); /* the document ends there */
        }
        if (other & 0xFFFF) {
            return j + __builtin_ctz(other);
        }
        j += 16;
    }
    return j;
}
#else
static inline Py_ssize_t
ascii_run_end(const uint8_t *text, Py_ssize_t j, Py_ssize_t n, const uint8_t *limit)
{
    (void)text, (void)n, (void)limit;
    return j;
}
#endif

/* The tokens of _default_tokens over n characters, recorded; ascii (a
 * constant where this is inlined) says whether the characters are the
 * text's bytes or the tokenizer's code points. */
ALWAYS_INLINE void
rules(const Vocabulary *v, Tokenizer *s, Py_ssize_t n, const int ascii)
{
    const uint8_t *text = s->text, *limit = s->limit, *classes = v->classes;
    const uint32_t *cp = s->cp;
    const uint8_t *cls = s->cls;
    const Py_ssize_t *at = s->at;
#define CP(k) (ascii ? (uint32_t)text[k] : cp[k])
#define IS_WORD(k) ((ascii ? classes[text[k]] : cls[k]) & CLASS_WORD)
#define EMIT(a, b) record(v, s, text, limit, ascii ? (a) : at[a], ascii ? (b) : at[b], &k)
    Py_ssize_t i = 0, k = s->waiting;
    while (i < n) {
        if (IS_WORD(i)) {
            Py_ssize_t j = ascii ? ascii_run_end(text, i + 1, n, limit) : i + 1;
            while (j < n && IS_WORD(j)) {
                j++;
            }
            /* \w+(?=n't\b)|n't\b: a run ending in "n" before "'t" and a non-word
             * character gives its "n" to an "n't" token. */
            if (CP(j - 1) == 'n' && j + 1 < n && CP(j) == '\'' && CP(j + 1) == 't' &&
                (j + 2 == n || !IS_WORD(j + 2))) {
                if (j - 1 > i) {
                    EMIT(i, j - 1);
                }
                EMIT(j - 1, j + 2);
                i = j + 2;
                continue;
            }
            EMIT(i, j);
            i = j;
        }
        else if (CP(i) == '\'' && i + 1 < n && IS_WORD(i + 1)) {
            /* '\w+: an apostrophe joins the word after it. */
            Py_ssize_t j = ascii ? ascii_run_end(text, i + 2, n, limit) : i + 2;
            while (j < n && IS_WORD(j)) {
                j++;
            }
            EMIT(i, j);
            i = j;
        }
        else {
            /* [^\w\s]: any other non-space character is a token of its own. */
            uint8_t c = ascii ? classes[text[i]] : cls[i];
            if (c & CLASS_OTHER) {
                EMIT(i, i + 1);
            }
            i++;
        }
    }
    s->waiting = k;
#undef EMIT
#undef IS_WORD
#undef CP
}

/* Rows of the tokens of one document (n_bytes of UTF-8, readable up to
 * limit), added to the tokenizer's ids (only the words' with known_only).
 * With lowercase, an ASCII document is lowercased first (the caller has
 * lowercased the others, whose Unicode rules need Python's str.lower).
 * Returns -1 when the ids are full or memory is short. */
static int
document_ids(const Vocabulary *v, Tokenizer *s, const uint8_t *text, Py_ssize_t n_bytes,
             const uint8_t *limit, int lowercase)
{
    uint8_t high = 0;
    for (Py_ssize_t b = 0; b < n_bytes; b++) {
        high |= text[b];
    }
    if (high < 0x80) {
        s->text = text;
        s->limit = limit;
        if (lowercase) { /* str.lower of an ASCII string */
            for (Py_ssize_t b = 0; b < n_bytes; b++) {
                s->lower[b] = text[b] + 32 * ((uint8_t)(text[b] - 'A') < 26);
            }
            memset(s->lower + n_bytes, 0, 16);
            s->text = s->lower;
            s->limit = s->lower + n_bytes + 16;
        }
        rules(v, s, n_bytes, 1);
    }
    else {
        if (s->cp == NULL) {
            s->cp = malloc((s->longest + 1) * sizeof(*s->cp));
            s->cls = malloc(s->longest + 1);
            s->at = malloc((s->longest + 1) * sizeof(*s->at));
            if (!s->cp || !s->cls || !s->at) {
                s->no_memory = 1;
                return -1;
            }
        }
        Py_ssize_t n = 0;
        for (Py_ssize_t b = 0; b < n_bytes;) {
            int length;
            uint32_t c = decode(text + b, n_bytes - b, &length);
            s->cp[n] = c;
            s->cls[n] = v->classes[c < N_CODE_POINTS ? c : 0];
            s->at[n] = b;
            n++;
            b += length;
        }
        s->at[n] = n_bytes;
        s->text = text;
        s->limit = limit;
        rules(v, s, n, 0);
    }
    flush(v, s);
    return s->full ? -1 : 0;
}

/* The size of the document at offset at of text (up to the next zero byte or
 * the end), at most longest. The documents are found again after the GIL is
 * released: a text that another thread changes meanwhile can not make one
 * longer than the buffers sized for it (only cut the documents elsewhere). */
static inline Py_ssize_t
document_size(const uint8_t *text, Py_ssize_t n_text, Py_ssize_t at, Py_ssize_t longest)
{
    Py_ssize_t left = n_text - at;
    if (left <= 0) {
        return 0;
    }
    const uint8_t *end = memchr(text + at, 0, left);
    Py_ssize_t size = end ? end - (text + at) : left;
    return size < longest ? size : longest;
}

/* The longest document of text (the documents separated by zero bytes), and
 * how many there are. */
static Py_ssize_t
count_documents(const uint8_t *text, Py_ssize_t n_text, Py_ssize_t *longest)
{
    Py_ssize_t n_docs = 0, at = 0;
    *longest = 0;
    while (1) {
        const uint8_t *end = at < n_text ? memchr(text + at, 0, n_text - at) : NULL;
        Py_ssize_t size = end ? end - (text + at) : n_text - at;
        *longest = size > *longest ? size : *longest;
        n_docs++;
        if (end == NULL) {
            return n_docs;
        }
        at += size + 1;
    }
}

PyDoc_STRVAR(token_ids_doc,
             "token_ids(text, classes, slots, starts, words, ids, doc_ptr, known_only,"
             " lowercase)\n--\n\n"
             "Rows of the default pattern's tokens (-1 when not a word, or left out with\n"
             "known_only) of each document of text (UTF-8, the documents separated by zero\n"
             "bytes; with lowercase, its ASCII documents lowercased), written to ids, and\n"
             "each document's first token to doc_ptr. ids needs room for every token, the\n"
             "unknown ones included (len(text) items are enough). Returns the number of\n"
             "tokens, or None when text holds another number of documents (one held a zero\n"
             "byte).");

static PyObject *
token_ids(PyObject *self, PyObject *args)
{
    enum { N = 7 };
    PyObject *objects[N];
    int known_only, lowercase;
    if (!PyArg_ParseTuple(args, "OOOOOOOpp", &objects[0], &objects[1], &objects[2], &objects[3],
                          &objects[4], &objects[5], &objects[6], &known_only, &lowercase)) {
        return NULL;
    }
    static const Py_ssize_t itemsizes[N] = {1, 1, sizeof(Slot), 8, 1, 8, 8};
    static const char *names[N] = {"text", "classes", "slots", "starts", "words", "ids", "doc_ptr"};
    Py_buffer views[N];
    int n_views = 0;
    PyObject *result = NULL;
    Tokenizer *tokenizer = NULL;
    Vocabulary v;
    n_views = get_buffers(objects, views, itemsizes, names, N, 5);
    if (n_views < N ||
        open_vocabulary(&v, &views[1], &views[2], &views[3], &views[4], "token_ids") < 0) {
        goto done;
    }
    const uint8_t *text = views[0].buf;
    Py_ssize_t n_text = views[0].len;
    int64_t *doc_ptr = views[6].buf;
    Py_ssize_t n_docs = views[6].len / 8 - 1, longest;
    if (n_docs < 1) {
        PyErr_SetString(PyExc_ValueError, "token_ids: doc_ptr must hold at least one item");
        goto done;
    }
    if (count_documents(text, n_text, &longest) != n_docs) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    tokenizer = tokenizer_new(longest);
    if (tokenizer == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    tokenizer->ids = views[5].buf;
    tokenizer->capacity = views[5].len / 8;
    tokenizer->known_only = known_only;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t at = 0;
    for (Py_ssize_t d = 0; d < n_docs && !failed; d++) {
        Py_ssize_t size = document_size(text, n_text, at, longest);
        doc_ptr[d] = tokenizer->count;
        failed = document_ids(&v, tokenizer, text + at, size, text + n_text, lowercase) < 0;
        at += size + 1;
    }
    doc_ptr[n_docs] = tokenizer->count;
    Py_END_ALLOW_THREADS
    if (tokenizer->no_memory) {
        PyErr_NoMemory();
        goto done;
    }
    if (tokenizer->full) {
        PyErr_SetString(PyExc_ValueError, "token_ids: ids is too small for the tokens");
        goto done;
    }
    result = PyLong_FromSsize_t(tokenizer->count);
done:
    tokenizer_free(tokenizer);
    release_buffers(views, n_views);
    return result;
}

/* --------------------------------------------------------------- pooling */

/* Wide vector units where the processor has them: the sums are the same (each
 * element adds its rows in order), only faster. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE
#endif

/* float16 rows are widened to float32 (exactly) as they are read: eight at a
 * time by F16C's conversions where the processor has them (F16C kernels
 * below), else one by one into scratch rows. */
static void
halves_portable(const uint16_t *h, float *f, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        uint32_t sign = (uint32_t)(h[k] & 0x8000) << 16, exponent = (h[k] >> 10) & 0x1f,
                 mantissa = h[k] & 0x3ff, bits;
        if (exponent == 0x1f) {
            bits = sign | 0x7f800000u | (mantissa << 13); /* infinity, NaN */
        }
        else if (exponent != 0) {
            bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
        }
        else {
            float value = (float)mantissa * 5.9604644775390625e-8f; /* subnormal: m * 2^-24 */
            memcpy(&bits, &value, sizeof(bits));
            bits |= sign;
        }
        memcpy(f + k, &bits, sizeof(bits));
    }
}

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define HAVE_F16C_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* The rows pooled: the vectors, then a batch's extra rows past their end, of
 * one type (float32, or float16 widened into scratch as they are read). */
typedef struct {
    const char *vectors, *extra;
    Py_ssize_t n_vectors, dim, row_bytes;
    int half;
    float *scratch; /* half: room for four rows of float32 */
} Rows;

/* sum_rows and extreme_rows over float16 rows with F16C's conversions, when
 * the processor has them and they are not turned off (half_kernels); NULL:
 * the portable code. */
static void (*sum_halves)(const Rows *, const int64_t *, const float *, Py_ssize_t,
                          const int64_t *, float *restrict) = NULL;
static void (*extreme_halves)(const Rows *, const int64_t *, Py_ssize_t, const int64_t *, int,
                              float *restrict) = NULL;

static inline const char *
row_of(const Rows *r, int64_t id)
{
    if (id < r->n_vectors) {
        return r->vectors + id * r->row_bytes;
    }
    return r->extra + (id - r->n_vectors) * r->row_bytes;
}

/* Row id's values as float32: the row itself, or its widened copy in the
 * scratch row j (0-3). */
static inline const float *
row_values(const Rows *r, int64_t id, int j)
{
    const char *x = row_of(r, id);
    if (!r->half) {
        return (const float *)x;
    }
    float *to = r->scratch + j * r->dim;
    halves_portable((const uint16_t *)x, to, r->dim);
    return to;
}

/* Rows are read from random places: each token's row is fetched this many
 * tokens ahead, so that several are on their way from memory at once. */
#define AHEAD 8

static inline void
fetch(const Rows *r, const int64_t *id, const int64_t *ids_end)
{
#if defined(__GNUC__)
    if (id < ids_end) {
        const char *x = row_of(r, *id);
        for (Py_ssize_t b = 0; b < r->row_bytes; b += 64) {
            __builtin_prefetch(x + b);
        }
    }
#endif
}

/* The rows of a table of n_vectors rows (extra: NULL or rows past its end)
 * of float32 or float16 (half); scratch for half rows allocated (NULL and an
 * error when short of memory). */
static int
rows_open(Rows *r, const Py_buffer *vectors, const Py_buffer *extra)
{
    Py_ssize_t dim = vectors->shape[1];
    *r = (Rows){vectors->buf,
                extra ? extra->buf : NULL,
                vectors->shape[0],
                dim,
                dim * vectors->itemsize,
                vectors->itemsize == 2,
                NULL};
    if (r->half) {
        r->scratch = malloc((4 * dim + 1) * sizeof(float));
        if (r->scratch == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* A 2-d table of float32 or float16 rows, C-contiguous and aligned. */
static int
get_table(PyObject *obj, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    Py_ssize_t itemsize = view->itemsize;
    if ((itemsize != 4 && itemsize != 2) || view->ndim != 2 ||
        !format_fits(view->format, itemsize) || (uintptr_t)view->buf % itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected an aligned 2-d array of float32 or float16",
                     name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* acc = the sum of w[t] * row(ids[t]) (w NULL: of the rows) for t < n, added
 * in order, four rows at a time (the same sums, a quarter of the reads and
 * writes of acc). The ids up to ids_end are fetched ahead. */
static void WIDE
sum_rows(const Rows *r, const int64_t *ids, const float *w, Py_ssize_t n,
         const int64_t *ids_end, float *restrict acc)
{
    if (r->half && sum_halves != NULL) {
        sum_halves(r, ids, w, n, ids_end, acc);
        return;
    }
    const Py_ssize_t dim = r->dim;
    memset(acc, 0, dim * sizeof(float));
    Py_ssize_t t = 0;
    for (; t + 4 <= n; t += 4) {
        for (int j = 0; j < 4; j++) {
            fetch(r, ids + t + j + AHEAD, ids_end);
        }
        const float *restrict x0 = row_values(r, ids[t], 0),
                              *restrict x1 = row_values(r, ids[t + 1], 1),
                              *restrict x2 = row_values(r, ids[t + 2], 2),
                              *restrict x3 = row_values(r, ids[t + 3], 3);
        if (w) {
            const float w0 = w[t], w1 = w[t + 1], w2 = w[t + 2], w3 = w[t + 3];
            for (Py_ssize_t k = 0; k < dim; k++) {
                acc[k] = (((acc[k] + w0 * x0[k]) + w1 * x1[k]) + w2 * x2[k]) + w3 * x3[k];
            }
        }
        else {
            for (Py_ssize_t k = 0; k < dim; k++) {
                acc[k] = (((acc[k] + x0[k]) + x1[k]) + x2[k]) + x3[k];
            }
        }
    }
    for (; t < n; t++) {
        fetch(r, ids + t + AHEAD, ids_end);
        const float *restrict x = row_values(r, ids[t], 0);
        const float weight = w ? w[t] : 1.0f;
        if (w) {
            for (Py_ssize_t k = 0; k < dim; k++) {
                acc[k] += weight * x[k];
            }
        }
        else {
            for (Py_ssize_t k = 0; k < dim; k++) {
                acc[k] += x[k];
            }
        }
    }
}

/* As np.maximum(a, b) / np.minimum(a, b): a NaN on either side gives NaN,
 * and a tie gives b (the sign of a zero included). */
#define MAX_OF(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define MIN_OF(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))

/* acc = the element-wise max (or min) of the rows of ids[t], t < n; zeros
 * when n is 0. */
static void WIDE
extreme_rows(const Rows *r, const int64_t *ids, Py_ssize_t n, const int64_t *ids_end,
             int is_max, float *restrict acc)
{
    if (r->half && extreme_halves != NULL) {
        extreme_halves(r, ids, n, ids_end, is_max, acc);
        return;
    }
    const Py_ssize_t dim = r->dim;
    if (n == 0) {
        memset(acc, 0, dim * sizeof(float));
        return;
    }
    memcpy(acc, row_values(r, ids[0], 0), dim * sizeof(float));
    Py_ssize_t t = 1;
    for (; t + 4 <= n; t += 4) {
        for (int j = 0; j < 4; j++) {
            fetch(r, ids + t + j + AHEAD, ids_end);
        }
        const float *restrict x0 = row_values(r, ids[t], 0),
                              *restrict x1 = row_values(r, ids[t + 1], 1),
                              *restrict x2 = row_values(r, ids[t + 2], 2),
                              *restrict x3 = row_values(r, ids[t + 3], 3);
        if (is_max) {
            for (Py_ssize_t k = 0; k < dim; k++) {
                float m = MAX_OF(acc[k], x0[k]);
                m = MAX_OF(m, x1[k]);
                m = MAX_OF(m, x2[k]);
                acc[k] = MAX_OF(m, x3[k]);
            }
        }
        else {
            for (Py_ssize_t k = 0; k < dim; k++) {
                float m = MIN_OF(acc[k], x0[k]);
                m = MIN_OF(m, x1[k]);
                m = MIN_OF(m, x2[k]);
                acc[k] = MIN_OF(m, x3[k]);
            }
        }
    }
    for (; t < n; t++) {
        fetch(r, ids + t + AHEAD, ids_end);
        const float *restrict x = row_values(r, ids[t], 0);
        if (is_max) {
            for (Py_ssize_t k = 0; k < dim; k++) {
                acc[k] = MAX_OF(acc[k], x[k]);
            }
        }
        else {
            for (Py_ssize_t k = 0; k < dim; k++) {
                acc[k] = MIN_OF(acc[k], x[k]);
            }
        }
    }
}

#ifdef HAVE_F16C_KERNELS
/* The F16C kernels: sum_rows and extreme_rows over float16 rows, each row
 * widened eight elements at a time as it is loaded, into float32 sums (and
 * extremes) in the same order as theirs, so the results are the same.
 * (AVX-512's sixteen-wide conversions were slower than these on a processor
 * with both.) */
#define F16C __attribute__((target("avx,f16c")))
#define WIDEN(x) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x)))
#define HALF(x) _cvtsh_ss(x)

static inline const uint16_t *
half_row(const Rows *r, int64_t id)
{
    return (const uint16_t *)row_of(r, id);
}

static void F16C
sum_halves_f16c(const Rows *r, const int64_t *ids, const float *w, Py_ssize_t n,
                const int64_t *ids_end, float *restrict acc)
{
    const Py_ssize_t dim = r->dim, wide = dim - dim % 8;
    memset(acc, 0, dim * sizeof(float));
    Py_ssize_t t = 0;
    for (; t + 4 <= n; t += 4) {
        for (int j = 0; j < 4; j++) {
            fetch(r, ids + t + j + AHEAD, ids_end);
        }
        const uint16_t *x0 = half_row(r, ids[t]), *x1 = half_row(r, ids[t + 1]),
                       *x2 = half_row(r, ids[t + 2]), *x3 = half_row(r, ids[t + 3]);
        Py_ssize_t k = 0;
        if (w) {
            const float w0 = w[t], w1 = w[t + 1], w2 = w[t + 2], w3 = w[t + 3];
            const __m256 v0 = _mm256_set1_ps(w0), v1 = _mm256_set1_ps(w1),
                         v2 = _mm256_set1_ps(w2), v3 = _mm256_set1_ps(w3);
            for (; k < wide; k += 8) {
                __m256 a = _mm256_loadu_ps(acc + k);
                a = _mm256_add_ps(a, _mm256_mul_ps(v0, WIDEN(x0 + k)));
                a = _mm256_add_ps(a, _mm256_mul_ps(v1, WIDEN(x1 + k)));
                a = _mm256_add_ps(a, _mm256_mul_ps(v2, WIDEN(x2 + k)));
                _mm256_storeu_ps(acc + k, _mm256_add_ps(a, _mm256_mul_ps(v3, WIDEN(x3 + k))));
            }
            for (; k < dim; k++) {
                acc[k] = (((acc[k] + w0 * HALF(x0[k])) + w1 * HALF(x1[k])) + w2 * HALF(x2[k])) +
                         w3 * HALF(x3[k]);
            }
        }
        else {
            for (; k < wide; k += 8) {
                __m256 a = _mm256_add_ps(_mm256_loadu_ps(acc + k), WIDEN(x0 + k));
                a = _mm256_add_ps(_mm256_add_ps(a, WIDEN(x1 + k)), WIDEN(x2 + k));
                _mm256_storeu_ps(acc + k, _mm256_add_ps(a, WIDEN(x3 + k)));
            }
            for (; k < dim; k++) {
                acc[k] = (((acc[k] + HALF(x0[k])) + HALF(x1[k])) + HALF(x2[k])) + HALF(x3[k]);
            }
        }
    }
    for (; t < n; t++) {
        fetch(r, ids + t + AHEAD, ids_end);
        const uint16_t *x = half_row(r, ids[t]);
        const float weight = w ? w[t] : 1.0f;
        const __m256 v = _mm256_set1_ps(weight);
        Py_ssize_t k = 0;
        for (; k < wide; k += 8) {
            __m256 y = w ? _mm256_mul_ps(v, WIDEN(x + k)) : WIDEN(x + k);
            _mm256_storeu_ps(acc + k, _mm256_add_ps(_mm256_loadu_ps(acc + k), y));
        }
        for (; k < dim; k++) {
            acc[k] += w ? weight * HALF(x[k]) : HALF(x[k]);
        }
    }
}

/* MAX_OF / MIN_OF on eight elements: a NaN in a gives a (the processor's
 * max / min would give b); a tie gives b, as theirs does. */
static inline __m256 F16C
nan_of_a(__m256 m, __m256 a)
{
    /* A bitwise select: as a blend, it was compiled into code per element. */
    __m256 nan = _mm256_cmp_ps(a, a, _CMP_UNORD_Q);
    return _mm256_or_ps(_mm256_andnot_ps(nan, m), _mm256_and_ps(nan, a));
}

static inline __m256 F16C
max8(__m256 a, __m256 b)
{
    return nan_of_a(_mm256_max_ps(a, b), a);
}

static inline __m256 F16C
min8(__m256 a, __m256 b)
{
    return nan_of_a(_mm256_min_ps(a, b), a);
}

/* MAX_OF / MIN_OF as functions: nested, the macros would repeat their arguments. */
static inline float
max1(float a, float b)
{
    return MAX_OF(a, b);
}

static inline float
min1(float a, float b)
{
    return MIN_OF(a, b);
}

/* extreme_rows' passes, OP8 / OP1 on eight / one elements: four rows at a
 * time, then one. */
#define EXTREME_HALVES(OP8, OP1)                                                                  \
    for (; t + 4 <= n; t += 4) {                                                                  \
        for (int j = 0; j < 4; j++) {                                                             \
            fetch(r, ids + t + j + AHEAD, ids_end);                                               \
        }                                                                                         \
        const uint16_t *x0 = half_row(r, ids[t]), *x1 = half_row(r, ids[t + 1]),                 \
                       *x2 = half_row(r, ids[t + 2]), *x3 = half_row(r, ids[t + 3]);             \
        Py_ssize_t k = 0;                                                                         \
        for (; k < wide; k += 8) {                                                                \
            __m256 m = OP8(OP8(_mm256_loadu_ps(acc + k), WIDEN(x0 + k)), WIDEN(x1 + k));          \
            _mm256_storeu_ps(acc + k, OP8(OP8(m, WIDEN(x2 + k)), WIDEN(x3 + k)));                 \
        }                                                                                         \
        for (; k < dim; k++) {                                                                    \
            float m = OP1(OP1(acc[k], HALF(x0[k])), HALF(x1[k]));                                 \
            acc[k] = OP1(OP1(m, HALF(x2[k])), HALF(x3[k]));                                       \
        }                                                                                         \
    }                                                                                             \
    for (; t < n; t++) {                                                                          \
        fetch(r, ids + t + AHEAD, ids_end);                                                       \
        const uint16_t *x = half_row(r, ids[t]);                                                  \
        Py_ssize_t k = 0;                                                                         \
        for (; k < wide; k += 8) {                                                                \
            _mm256_storeu_ps(acc + k, OP8(_mm256_loadu_ps(acc + k), WIDEN(x + k)));               \
        }                                                                                         \
        for (; k < dim; k++) {                                                                    \
            acc[k] = OP1(acc[k], HALF(x[k]));                                                     \
        }                                                                                         \
    }

static void F16C
extreme_halves_f16c(const Rows *r, const int64_t *ids, Py_ssize_t n, const int64_t *ids_end,
                    int is_max, float *restrict acc)
{
    const Py_ssize_t dim = r->dim, wide = dim - dim % 8;
    if (n == 0) {
        memset(acc, 0, dim * sizeof(float));
        return;
    }
    const uint16_t *first = half_row(r, ids[0]);
    Py_ssize_t t = 0;
    for (; t < wide; t += 8) {
        _mm256_storeu_ps(acc + t, WIDEN(first + t));
    }
    for (; t < dim; t++) {
        acc[t] = HALF(first[t]);
    }
    t = 1;
    if (is_max) {
        EXTREME_HALVES(max8, max1)
    }
    else {
        EXTREME_HALVES(min8, min1)
    }
}
#endif

/* Turns the F16C kernels on (where the processor has F16C) or off. */
static int
use_f16c_kernels(int on)
{
#ifdef HAVE_F16C_KERNELS
    unsigned int a, b, c, d;
    __builtin_cpu_init();
    if (on && __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C)) {
        sum_halves = sum_halves_f16c;
        extreme_halves = extreme_halves_f16c;
        return 1;
    }
#endif
    (void)on;
    sum_halves = NULL;
    extreme_halves = NULL;
    return 0;
}

/* The buffers of a pooling call, checked: every id inside the rows, offsets
 * rising within the ids, shapes that agree. */
typedef struct {
    Py_buffer vectors, extra, ids, doc_ptr, weights, out;
    Rows rows;
    Py_ssize_t n_ids, n_docs;
} Pooling;

static void
pooling_release(Pooling *p)
{
    free(p->rows.scratch);
    p->rows.scratch = NULL;
    Py_buffer *all[6] = {&p->vectors, &p->extra, &p->ids, &p->doc_ptr, &p->weights, &p->out};
    for (int k = 0; k < 6; k++) {
        if (all[k]->obj != NULL) {
            PyBuffer_Release(all[k]);
        }
    }
}

static int
pooling_open(Pooling *p, PyObject *vectors, PyObject *extra, PyObject *ids, PyObject *doc_ptr,
             PyObject *weights, PyObject *out)
{
    memset(p, 0, sizeof(*p));
    if (get_table(vectors, &p->vectors, "vectors") < 0 ||
        (extra != Py_None && get_table(extra, &p->extra, "extra") < 0) ||
        get_buffer(ids, &p->ids, 8, 1, 0, "ids") < 0 ||
        get_buffer(doc_ptr, &p->doc_ptr, 8, 1, 0, "doc_ptr") < 0 ||
        (weights != Py_None && get_buffer(weights, &p->weights, 4, 1, 0, "weights") < 0) ||
        get_buffer(out, &p->out, 4, 2, 1, "out") < 0) {
        goto fail;
    }
    Py_ssize_t dim = p->vectors.shape[1];
    Py_ssize_t n_extra = p->extra.obj ? p->extra.shape[0] : 0;
    p->n_ids = p->ids.shape[0];
    p->n_docs = p->doc_ptr.shape[0] - 1;
    if (p->extra.obj && p->extra.itemsize != p->vectors.itemsize) {
        PyErr_SetString(PyExc_TypeError, "pooling: extra rows of another type than the vectors");
        goto fail;
    }
    if (rows_open(&p->rows, &p->vectors, p->extra.obj ? &p->extra : NULL) < 0) {
        goto fail;
    }
    if ((p->extra.obj && p->extra.shape[1] != dim) || p->n_docs < 0 ||
        p->out.shape[0] != p->n_docs || p->out.shape[1] != dim ||
        (p->weights.obj && p->weights.shape[0] != p->n_ids)) {
        PyErr_SetString(PyExc_ValueError, "pooling: shapes do not agree");
        goto fail;
    }
    const int64_t *ptr = p->doc_ptr.buf, *row = p->ids.buf;
    int64_t n_rows = (int64_t)(p->rows.n_vectors + n_extra);
    if (ptr[0] < 0) {
        PyErr_SetString(PyExc_ValueError, "pooling: doc_ptr is not rising within the ids");
        goto fail;
    }
    for (Py_ssize_t d = 0; d < p->n_docs; d++) {
        if (ptr[d] > ptr[d + 1] || ptr[d + 1] > p->n_ids) {
            PyErr_SetString(PyExc_ValueError, "pooling: doc_ptr is not rising within the ids");
            goto fail;
        }
    }
    for (Py_ssize_t t = 0; t < p->n_ids; t++) {
        if (row[t] < 0 || row[t] >= n_rows) {
            PyErr_SetString(PyExc_IndexError, "pooling: an id lies outside the vectors");
            goto fail;
        }
    }
    return 0;
fail:
    pooling_release(p);
    return -1;
}

PyDoc_STRVAR(pool_sum_doc, "pool_sum(vectors, extra, ids, doc_ptr, weights, out)\n--\n\n"
                           "out[i] = sum of weights[t] * row(ids[t]) over document i's tokens,\n"
                           "added in order (rows past the vectors' end come from extra).");

static PyObject *
pool_sum(PyObject *self, PyObject *args)
{
    PyObject *vectors, *extra, *ids, *doc_ptr, *weights, *out;
    if (!PyArg_ParseTuple(args, "OOOOOO", &vectors, &extra, &ids, &doc_ptr, &weights, &out)) {
        return NULL;
    }
    Pooling p;
    if (pooling_open(&p, vectors, extra, ids, doc_ptr, weights, out) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    const int64_t *ptr = p.doc_ptr.buf, *row = p.ids.buf;
    const float *w = p.weights.obj ? p.weights.buf : NULL;
    for (Py_ssize_t d = 0; d < p.n_docs; d++) {
        sum_rows(&p.rows, row + ptr[d], w ? w + ptr[d] : NULL, ptr[d + 1] - ptr[d],
                 row + p.n_ids, (float *)p.out.buf + d * p.rows.dim);
    }
    Py_END_ALLOW_THREADS
    pooling_release(&p);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pool_extreme_doc,
             "pool_extreme(vectors, extra, ids, doc_ptr, is_max, out)\n--\n\n"
             "out[i] = element-wise max (or min) of document i's rows, as np.maximum\n"
             "(np.minimum) gives it, NaN included; zeros for a document without tokens.");

static PyObject *
pool_extreme(PyObject *self, PyObject *args)
{
    PyObject *vectors, *extra, *ids, *doc_ptr, *out;
    int is_max;
    if (!PyArg_ParseTuple(args, "OOOOpO", &vectors, &extra, &ids, &doc_ptr, &is_max, &out)) {
        return NULL;
    }
    Pooling p;
    if (pooling_open(&p, vectors, extra, ids, doc_ptr, Py_None, out) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    const int64_t *ptr = p.doc_ptr.buf, *row = p.ids.buf;
    for (Py_ssize_t d = 0; d < p.n_docs; d++) {
        extreme_rows(&p.rows, row + ptr[d], ptr[d + 1] - ptr[d], row + p.n_ids, is_max,
                     (float *)p.out.buf + d * p.rows.dim);
    }
    Py_END_ALLOW_THREADS
    pooling_release(&p);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------ text to vectors */

/* What pool_text computes per document (_fused.py names them). */
enum { POOL_SUM, POOL_MEAN, POOL_WEIGHTED_MEAN, POOL_MAX, POOL_MIN };

/* One document's pooling in pool_text (ids: its known rows). */
static void
pool_document(const Rows *rows, const int64_t *ids, Py_ssize_t n, int mode,
              const float *row_weights, float *doc_weights, float *acc)
{
    if (mode == POOL_MAX || mode == POOL_MIN) {
        extreme_rows(rows, ids, n, ids + n, mode == POOL_MAX, acc);
        return;
    }
    const float *w = NULL;
    if (row_weights) {
        for (Py_ssize_t t = 0; t < n; t++) {
            doc_weights[t] = row_weights[ids[t]];
        }
        w = doc_weights;
    }
    sum_rows(rows, ids, w, n, ids + n, acc);
    float denom = 1.0f;
    if (mode == POOL_MEAN) {
        denom = n > 1 ? (float)n : 1.0f;
    }
    else if (mode == POOL_WEIGHTED_MEAN) {
        double total = 0.0; /* as np.bincount adds them */
        for (Py_ssize_t t = 0; t < n; t++) {
            total += w ? (double)w[t] : 1.0;
        }
        denom = total > 0 ? (float)total : 1.0f;
    }
    if (denom != 1.0f) {
        for (Py_ssize_t k = 0; k < rows->dim; k++) {
            acc[k] /= denom;
        }
    }
}

PyDoc_STRVAR(
    pool_text_doc,
    "pool_text(text, classes, slots, starts, words, vectors, row_weights, mode, out, counts,"
    " lowercase)\n--\n\n"
    "token_ids and the pooling in one pass: out[i] is document i's pooled known\n"
    "rows (mode: 0 sum, 1 mean, 2 mean by the weights' sum, 3 max, 4 min; rows\n"
    "weighted by row_weights[id] in modes 0-2 unless it is None), counts[i] its\n"
    "number of known tokens. Returns the number of documents, or None (and writes\n"
    "nothing) when text holds another number of documents.");

static PyObject *
pool_text(PyObject *self, PyObject *args)
{
    enum { N = 5 };
    PyObject *objects[N], *vectors_arg, *weights_arg, *out_arg, *counts_arg;
    int mode, lowercase;
    if (!PyArg_ParseTuple(args, "OOOOOOOiOOp", &objects[0], &objects[1], &objects[2],
                          &objects[3], &objects[4], &vectors_arg, &weights_arg, &mode, &out_arg,
                          &counts_arg, &lowercase)) {
        return NULL;
    }
    static const Py_ssize_t itemsizes[N] = {1, 1, sizeof(Slot), 8, 1};
    static const char *names[N] = {"text", "classes", "slots", "starts", "words"};
    Py_buffer views[N], vectors = {0}, weights = {0}, out = {0}, counts = {0};
    int n_views = 0;
    PyObject *result = NULL;
    Tokenizer *tokenizer = NULL;
    int64_t *doc_ids = NULL;
    float *doc_weights = NULL;
    Vocabulary v;
    Rows rows = {0};
    n_views = get_buffers(objects, views, itemsizes, names, N, N);
    if (n_views < N ||
        open_vocabulary(&v, &views[1], &views[2], &views[3], &views[4], "pool_text") < 0) {
        goto done;
    }
    if (get_table(vectors_arg, &vectors, "vectors") < 0 ||
        (weights_arg != Py_None && get_buffer(weights_arg, &weights, 4, 1, 0, "row_weights") < 0) ||
        get_buffer(out_arg, &out, 4, 2, 1, "out") < 0 ||
        get_buffer(counts_arg, &counts, 8, 1, 1, "counts") < 0) {
        goto done;
    }
    const uint8_t *text = views[0].buf;
    Py_ssize_t n_text = views[0].len;
    if (rows_open(&rows, &vectors, NULL) < 0) {
        goto done;
    }
    Py_ssize_t n_docs = counts.shape[0];
    if (out.shape[0] != n_docs || out.shape[1] != rows.dim ||
        (weights.obj && weights.shape[0] != rows.n_vectors) || mode < POOL_SUM ||
        mode > POOL_MIN) {
        PyErr_SetString(PyExc_ValueError, "pool_text: shapes or mode do not agree");
        goto done;
    }
    Py_ssize_t longest;
    if (count_documents(text, n_text, &longest) != n_docs) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* Two documents' ids: the next one is tokenised, and the first of its rows
     * fetched, before this one is pooled. */
    doc_ids = malloc(2 * (longest + 1) * sizeof(*doc_ids));
    doc_weights = malloc((longest + 1) * sizeof(*doc_weights));
    tokenizer = tokenizer_new(longest);
    if (tokenizer == NULL || !doc_ids || !doc_weights) {
        PyErr_NoMemory();
        goto done;
    }
    tokenizer->known_only = 1;
    tokenizer->capacity = longest + 1;
    int outside = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t at = 0;
    const float *row_weights = weights.obj ? weights.buf : NULL;
    int64_t *ids = doc_ids, *next_ids = doc_ids + longest + 1;
    Py_ssize_t n = 0, next_n = 0;
    for (Py_ssize_t d = 0; d <= n_docs; d++) {
        if (d < n_docs) {
            Py_ssize_t size = document_size(text, n_text, at, longest);
            tokenizer->ids = next_ids;
            tokenizer->count = 0;
            if (document_ids(&v, tokenizer, text + at, size, text + n_text, lowercase) < 0) {
                break; /* short of memory (the ids have room for every token) */
            }
            next_n = tokenizer->count;
            at += size + 1;
            for (Py_ssize_t t = 0; t < next_n; t++) {
                outside |= next_ids[t] >= rows.n_vectors; /* a table not of these vectors */
            }
            if (outside) {
                break;
            }
            for (Py_ssize_t t = 0; t < next_n && t < AHEAD; t++) {
                fetch(&rows, next_ids + t, next_ids + next_n);
            }
        }
        if (d > 0) {
            pool_document(&rows, ids, n, mode, row_weights, doc_weights,
                          (float *)out.buf + (d - 1) * rows.dim);
            ((int64_t *)counts.buf)[d - 1] = n;
        }
        int64_t *swap = ids;
        ids = next_ids;
        next_ids = swap;
        n = next_n;
    }
    Py_END_ALLOW_THREADS
    if (tokenizer->no_memory || tokenizer->full) {
        PyErr_NoMemory();
        goto done;
    }
    if (outside) {
        PyErr_SetString(PyExc_IndexError, "pool_text: a word's row lies outside the vectors");
        goto done;
    }
    result = PyLong_FromSsize_t(n_docs);
done:
    tokenizer_free(tokenizer);
    free(doc_ids);
    free(doc_weights);
    free(rows.scratch);
    Py_buffer *own[4] = {&vectors, &weights, &out, &counts};
    for (int k = 0; k < 4; k++) {
        if (own[k]->obj != NULL) {
            PyBuffer_Release(own[k]);
        }
    }
    release_buffers(views, n_views);
    return result;
}

/* ------------------------------------------------ BERT's whole words */

/* How BERT's pre-tokenizer sees a byte (as _wordpiece.py's classes): where
 * it cuts text, what it keeps whole, and what only the tokenizer handles
 * (ASCII controls, which its text cleaning changes, and every byte of a
 * character beyond ASCII). */
enum { BERT_BOUNDARY, BERT_ALNUM, BERT_PUNCT, BERT_COMPLEX };

static inline int
bert_class(uint8_t b)
{
    if (b == 0 || b == 9 || b == 10 || b == 13 || b == 32) {
        return BERT_BOUNDARY;
    }
    if ((b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z')) {
        return BERT_ALNUM;
    }
    return b >= 33 && b <= 126 ? BERT_PUNCT : BERT_COMPLEX;
}

PyDoc_STRVAR(
    whole_word_ids_doc,
    "whole_word_ids(text, n_docs, slots, starts, words, lowercase, ids, id_docs, id_starts,"
    " spans, span_docs)\n--\n\n"
    "BERT's fast path over text (UTF-8, n_docs documents separated by zero bytes):\n"
    "the ids of the ASCII words and punctuation marks that are whole entries of\n"
    "the table (looked up lowercased with lowercase), with their documents and\n"
    "first bytes, and the byte spans [start, end) left to the tokenizer (the other\n"
    "words, and whole runs holding a control or a character beyond ASCII), with\n"
    "their documents. Returns (number of ids, number of spans), or None when text\n"
    "holds another number of documents.");

static PyObject *
whole_word_ids(PyObject *self, PyObject *args)
{
    enum { N = 9 };
    PyObject *objects[N];
    Py_ssize_t n_docs;
    int lowercase;
    if (!PyArg_ParseTuple(args, "OnOOOpOOOOO", &objects[0], &n_docs, &objects[1], &objects[2],
                          &objects[3], &lowercase, &objects[4], &objects[5], &objects[6],
                          &objects[7], &objects[8])) {
        return NULL;
    }
    static const Py_ssize_t itemsizes[N] = {1, sizeof(Slot), 8, 1, 8, 8, 8, 8, 8};
    static const char *names[N] = {"text",    "slots",     "starts", "words",    "ids",
                                   "id_docs", "id_starts", "spans",  "span_docs"};
    Py_buffer views[N];
    int n_views = 0;
    PyObject *result = NULL;
    uint8_t *lower = NULL;
    Vocabulary v;
    n_views = get_buffers(objects, views, itemsizes, names, N, 4);
    if (n_views < N ||
        open_vocabulary(&v, NULL, &views[1], &views[2], &views[3], "whole_word_ids") < 0) {
        goto done;
    }
    const uint8_t *text = views[0].buf;
    Py_ssize_t n_text = views[0].len;
    Py_ssize_t id_capacity = views[4].len / 8, span_capacity = views[8].len / 8;
    if (views[5].len != views[4].len || views[6].len != views[4].len ||
        views[7].len != 2 * views[8].len) {
        PyErr_SetString(PyExc_ValueError, "whole_word_ids: outputs of sizes that do not agree");
        goto done;
    }
    Py_ssize_t longest;
    if (n_docs < 1 || count_documents(text, n_text, &longest) != n_docs) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    lower = malloc(longest + 8);
    if (lower == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t *ids = views[4].buf, *id_docs = views[5].buf, *id_starts = views[6].buf,
            *spans = views[7].buf, *span_docs = views[8].buf;
    Py_ssize_t n_ids = 0, n_spans = 0;
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t offset = 0;
    for (Py_ssize_t d = 0; d < n_docs && !full; d++) {
        Py_ssize_t size = document_size(text, n_text, offset, longest);
        const uint8_t *doc = text + offset;
        /* The document as looked up: lowercased (BERT lowercases ASCII as
         * str.lower does), with 8 zero bytes after it. */
        for (Py_ssize_t b = 0; b < size; b++) {
            lower[b] = doc[b] + (lowercase ? 32 * ((uint8_t)(doc[b] - 'A') < 26) : 0);
        }
        memset(lower + size, 0, 8);
#define SPAN(a, b)                                                                           \
    do {                                                                                     \
        if (n_spans >= span_capacity) {                                                      \
            full = 1;                                                                        \
            break;                                                                           \
        }                                                                                    \
        spans[2 * n_spans] = offset + (a);                                                   \
        spans[2 * n_spans + 1] = offset + (b);                                               \
        span_docs[n_spans++] = d;                                                            \
    } while (0)
        Py_ssize_t i = 0;
        while (i < size && !full) {
            if (bert_class(doc[i]) == BERT_BOUNDARY) {
                i++;
                continue;
            }
            Py_ssize_t j = i;
            int complex = 0;
            while (j < size && bert_class(doc[j]) != BERT_BOUNDARY) {
                complex |= bert_class(doc[j]) == BERT_COMPLEX;
                j++;
            }
            if (complex) { /* the whole run to the tokenizer */
                SPAN(i, j);
                i = j;
                continue;
            }
            for (Py_ssize_t k = i; k < j && !full;) {
                Py_ssize_t w = k + 1;
                if (bert_class(doc[k]) == BERT_ALNUM) {
                    while (w < j && bert_class(doc[w]) == BERT_ALNUM) {
                        w++;
                    }
                }
                uint64_t h = span_hash(lower + k, w - k, lower + size + 8);
                int64_t id = find(&v, h, lower + k, w - k);
                if (id < 0) {
                    SPAN(k, w);
                }
                else if (n_ids >= id_capacity) {
                    full = 1;
                }
                else {
                    ids[n_ids] = id;
                    id_starts[n_ids] = offset + k;
                    id_docs[n_ids++] = d;
                }
                k = w;
            }
            i = j;
        }
#undef SPAN
        offset += size + 1;
    }
    Py_END_ALLOW_THREADS
    if (full) {
        PyErr_SetString(PyExc_ValueError, "whole_word_ids: the outputs are too small");
        goto done;
    }
    result = Py_BuildValue("(nn)", n_ids, n_spans);
done:
    free(lower);
    release_buffers(views, n_views);
    return result;
}

PyDoc_STRVAR(half_kernels_doc,
             "half_kernels(f16c=None)\n--\n\n"
             "'f16c' when float16 rows are widened by the processor's F16C conversions,\n"
             "'portable' otherwise. With f16c True or False, first turns them on (where\n"
             "the processor has F16C) or off; the results are the same either way.");

static PyObject *
half_kernels(PyObject *self, PyObject *args)
{
    PyObject *f16c = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &f16c)) {
        return NULL;
    }
    if (f16c != Py_None) {
        int on = PyObject_IsTrue(f16c);
        if (on < 0) {
            return NULL;
        }
        use_f16c_kernels(on);
    }
    return PyUnicode_FromString(sum_halves != NULL ? "f16c" : "portable");
}

static PyMethodDef methods[] = {
    {"token_ids", token_ids, METH_VARARGS, token_ids_doc},
    {"pool_sum", pool_sum, METH_VARARGS, pool_sum_doc},
    {"pool_extreme", pool_extreme, METH_VARARGS, pool_extreme_doc},
    {"pool_text", pool_text, METH_VARARGS, pool_text_doc},
    {"whole_word_ids", whole_word_ids, METH_VARARGS, whole_word_ids_doc},
    {"half_kernels", half_kernels, METH_VARARGS, half_kernels_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Compiled kernels for word-vector pooling.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    use_f16c_kernels(1);
    return PyModule_Create(&module);
}
