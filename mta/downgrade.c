/* downgrade.c: an 8-bit message for a next hop without 8BITMIME (RFC 6152 3).
 *
 * A message received with BODY=8BITMIME may go as it is only to a server
 * that advertises 8BITMIME. For one that does not, RFC 6152 leaves two
 * choices: convert the message to 7 bits, or return it with 5.6.3. We
 * convert what can be converted safely and refuse the rest:
 *
 *   - nothing above 0x7f anywhere: it is 7-bit already, send as it is;
 *   - an 8-bit header section: cannot be encoded here (that would need
 *     RFC 2047 rewriting of every field): refused;
 *   - a single-part body (not multipart/ or message/): its
 *     Content-Transfer-Encoding fields are replaced by quoted-printable and
 *     the body encoded (RFC 2045 6.7), MIME-Version added when missing;
 *   - a multipart or message body with 8-bit octets: refused (each part
 *     would need its own conversion). */
#include "mta.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "header.h"

/* True when any octet is above 0x7f. */
static bool downgrade_has_8bit(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)data[i] >= 0x80)
			return true;
	return false;
}

int downgrade_to_7bit(const char *msg, size_t len, char **out_r, size_t *out_len_r,
		      const char **why_r)
{
	*out_r = NULL;
	*out_len_r = 0;
	if (!downgrade_has_8bit(msg, len))
		return 0;
	size_t hlen = header_section_length(msg, len);
	if (downgrade_has_8bit(msg, hlen)) {
		*why_r = "the header section holds 8-bit octets";
		return -1;
	}
	struct header h;
	if (header_parse(msg, hlen, &h) < 0) {
		*why_r = "the header section cannot be parsed";
		return -1;
	}
	const char *type = header_get(&h, "Content-Type");
	while (type != NULL && (*type == ' ' || *type == '\t'))
		type++;
	if (type != NULL && (strncasecmp(type, "multipart/", 10) == 0 ||
			     strncasecmp(type, "message/", 8) == 0)) {
		header_free(&h);
		*why_r = "a multipart or message body holds 8-bit octets";
		return -1;
	}
	buf_t out = BUF_INIT;
	buf_reserve(&out, len + len / 4 + 128);
	/* The header without its Content-Transfer-Encoding fields (nor the empty
	 * line), then ours. */
	size_t copied = 0;
	size_t end = h.has_body_separator && hlen >= 2 ? hlen - 2 : hlen;
	for (size_t i = 0; i < h.count; i++) {
		const struct header_field *f = &h.fields[i];
		if (strcasecmp(f->name, "Content-Transfer-Encoding") != 0)
			continue;
		buf_append(&out, msg + copied, f->raw_offset - copied);
		copied = f->raw_offset + f->raw_len;
	}
	if (copied < end)
		buf_append(&out, msg + copied, end - copied);
	if (out.len >= 1 && out.data[out.len - 1] != '\n')
		buf_append_str(&out, "\r\n");
	if (header_get(&h, "MIME-Version") == NULL)
		buf_append_str(&out, "MIME-Version: 1.0\r\n");
	buf_append_str(&out, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	header_free(&h);
	char *qp = qp_encode(msg + hlen, len - hlen);
	buf_append_str(&out, qp);
	free(qp);
	if (out.len < 2 || memcmp(out.data + out.len - 2, "\r\n", 2) != 0)
		buf_append_str(&out, "\r\n");
	*out_len_r = out.len;
	*out_r = buf_steal(&out);
	return 0;
}
