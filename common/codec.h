/* codec.h: base64 (RFC 4648) and quoted-printable (RFC 2045 6.7).
 * Decoders are lenient where RFC 2045 says to be (whitespace, soft breaks) and
 * report garbage instead of guessing. All output is allocated (caller frees)
 * and NUL-terminated after *len_r bytes. */
#ifndef MAILSTACK_CODEC_H
#define MAILSTACK_CODEC_H

#include <stdbool.h>
#include <stddef.h>

char *base64_encode(const void *data, size_t len);
/* Encodes with CRLF line breaks every 76 characters (MIME bodies). */
char *base64_encode_lines(const void *data, size_t len);
/* Strict: only the alphabet and correct padding (SASL). -1 on error. */
int base64_decode(const char *text, size_t text_len, char **out_r, size_t *len_r);
/* Lenient: skips whitespace and line breaks (MIME bodies); -1 on illegal characters. */
int base64_decode_mime(const char *text, size_t text_len, char **out_r, size_t *len_r);

/* Quoted-printable: encodes with soft breaks before 76 columns, CRLF line ends. */
char *qp_encode(const void *data, size_t len);
/* Decodes; malformed '=' sequences are kept literally (RFC 2045 6.7, note 1). */
int qp_decode(const char *text, size_t text_len, char **out_r, size_t *len_r);

/* Resumable decoding for streams: feed chunks, get decoded bytes appended. */
struct buf;
typedef struct { unsigned bits; int nbits; int pad; } base64_state;
void base64_stream_init(base64_state *st);
int base64_stream_decode(base64_state *st, const char *in, size_t len, struct buf *out);
/* At the end of the input: 0 when it ended on a quantum boundary or on a
 * decodable unpadded tail (2 or 3 characters), -1 for a lone dangling character. */
int base64_stream_finish(const base64_state *st);

/* Resumable quoted-printable decoding (the same rules as qp_decode): bytes that
 * cannot be decided yet ("=", "=4", trailing whitespace) wait in pending, which
 * never grows past QP_STREAM_PENDING_MAX (longer whitespace runs are flushed). */
#define QP_STREAM_PENDING_MAX 128
typedef struct { char pending[QP_STREAM_PENDING_MAX]; size_t pending_len; } qp_state;
void qp_stream_init(qp_state *st);
/* Appends what can be decoded so far to out; always 0 (malformed input is kept). */
int qp_stream_decode(qp_state *st, const char *in, size_t len, struct buf *out);
/* Flushes what is still pending at the end of the input. */
int qp_stream_finish(qp_state *st, struct buf *out);

/* True when data is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
bool utf8_valid(const void *data, size_t len);

#endif
