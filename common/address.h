/* address.h: RFC 5322 addresses and address lists (From, To, Cc, Reply-To...).
 *
 * Parses mailbox-list / address-list with display names (phrase or quoted
 * string, encoded words decoded to UTF-8), angle addresses, groups, comments,
 * and the obsolete forms real mail still has. Lenient where readers must be:
 * an unparsable piece is kept as raw text rather than dropped. */
#ifndef MAILSTACK_ADDRESS_H
#define MAILSTACK_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

struct mail_address {
	char *name;     /* display name, UTF-8 decoded, or NULL */
	char *name_raw; /* display name as written (encoded words kept), or NULL */
	char *local;    /* local part (quotes removed), or NULL for a group marker */
	char *domain;   /* or NULL */
	char *group;    /* for the first member of a group: the group name */
	bool group_start;
	bool group_end;
};

struct address_list {
	struct mail_address *items;
	size_t count;
};

/* Parses an unfolded header value. Always returns 0 and fills what it could;
 * returns -1 only when nothing at all was recognisable. */
int address_list_parse(const char *text, size_t len, struct address_list *list_r);
void address_list_free(struct address_list *list);
/* "local@domain" (caller frees). */
char *mail_address_spec(const struct mail_address *a);
/* Formats for a header: "Name <local@domain>", encoding the name as an RFC 2047
 * word when it is not ASCII and quoting it when it has specials (caller frees). */
char *mail_address_format(const char *name, const char *addr_spec);
/* Checks a bare addr-spec ("local@domain") as a user would type it. */
bool address_spec_valid(const char *spec);

#endif
