/* mutf7.h: modified UTF-7, the wire form of IMAP mailbox names (RFC 3501
 * section 5.1.3). Both ends use it: imapd decodes the names clients send and
 * encodes the names it lists; the mua shows and takes names in UTF-8 and
 * converts at the protocol edge. Decoding is strict (one name, one wire form),
 * which imapd relies on so that two spellings never name one folder. */
#ifndef MAILSTACK_MUTF7_H
#define MAILSTACK_MUTF7_H

/* UTF-8 to modified UTF-7 (caller frees). An invalid UTF-8 byte becomes U+FFFD. */
char *mutf7_encode(const char *utf8);
/* Modified UTF-7 to UTF-8: 0 and *utf8_r (caller frees), or -1 and NULL when
 * the name is not valid modified UTF-7 (8-bit bytes, a bad base64 run, an
 * unterminated '&', ASCII that should not be encoded, a lone surrogate). */
int mutf7_decode(const char *utf7, char **utf8_r);
/* For display: the decoded name, or a copy of the name as it is when it does
 * not decode (caller frees). */
char *mutf7_display(const char *utf7);

#endif
