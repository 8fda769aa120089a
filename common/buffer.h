/* buffer.h: growable byte buffers and allocation that never returns NULL.
 *
 * Out of memory is fatal in mailstack (STYLE.md, practice 7): xmalloc and
 * friends abort with a message instead of returning NULL, so callers never
 * carry a half-handled allocation failure. A buf_t always keeps a NUL after
 * its data, so buf.data can be used as a C string when it holds text. */
#ifndef MAILSTACK_BUFFER_H
#define MAILSTACK_BUFFER_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Formats into a newly allocated string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef struct buf {
	char *data; /* NUL-terminated after len; NULL until the first append */
	size_t len;
	size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *b);
void buf_free(buf_t *b);
/* Empties the buffer but keeps its memory. */
void buf_reset(buf_t *b);
/* Makes room for at least extra more bytes (plus the NUL). */
void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *data, size_t len);
void buf_append_str(buf_t *b, const char *s);
void buf_append_char(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes. */
void buf_consume(buf_t *b, size_t n);
/* Returns the text (never NULL: "" for an empty buffer). */
const char *buf_cstr(const buf_t *b);
/* Hands the data to the caller (NUL-terminated, never NULL) and empties b. */
char *buf_steal(buf_t *b);

#endif
