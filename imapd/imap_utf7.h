/* imap_utf7.h: modified UTF-7 for mailbox names on the wire (RFC 3501
 * section 5.1.3); names are UTF-8 everywhere else. */
#ifndef MAILSTACK_IMAP_UTF7_H
#define MAILSTACK_IMAP_UTF7_H

/* UTF-8 to modified UTF-7 (caller frees). Invalid UTF-8 bytes become U+FFFD. */
char *imap_utf7_encode(const char *utf8);
/* Modified UTF-7 to UTF-8: 0 and *utf8_r (caller frees), or -1 (and NULL) when
 * the text is not valid modified UTF-7 (raw 8-bit, bad base64, an unclosed
 * '&' run, printable ASCII encoded in base64, unpaired surrogates). */
int imap_utf7_decode(const char *utf7, char **utf8_r);

#endif
