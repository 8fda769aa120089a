/* buffer.c: growable byte buffers and fatal-on-failure allocation. */
#include "buffer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Out of memory is fatal (STYLE practice 7): says how much, then aborts. */
static void out_of_memory(size_t size)
{
	fprintf(stderr, "mailstack: out of memory allocating %zu bytes\n", size);
	abort();
}

void *xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);
	if (p == NULL)
		out_of_memory(size);
	return p;
}

void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
	if (p == NULL)
		out_of_memory(count * size);
	return p;
}

void *xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size == 0 ? 1 : size);
	if (p == NULL)
		out_of_memory(size);
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	buf_t b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_steal(&b);
}

void buf_init(buf_t *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(buf_t *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(buf_t *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void buf_reserve(buf_t *b, size_t extra)
{
	if (extra >= SIZE_MAX / 2 - b->len)
		out_of_memory(extra);
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
	b->data[b->len] = '\0';
}

void buf_append(buf_t *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void buf_append_str(buf_t *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_append_char(buf_t *b, char c)
{
	buf_append(b, &c, 1);
}

void buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
	va_list copy;
	va_copy(copy, ap);
	int n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_consume(buf_t *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

const char *buf_cstr(const buf_t *b)
{
	return b->data != NULL ? b->data : "";
}

char *buf_steal(buf_t *b)
{
	char *p = b->data != NULL ? b->data : xstrdup("");
	buf_init(b);
	return p;
}
