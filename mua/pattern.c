/* pattern.c: mutt-style search patterns turned into IMAP SEARCH keys
 * (RFC 3501 6.4.4), so searching and limiting run on the server.
 *
 *   ~f TEXT  FROM      ~t TEXT  TO       ~c TEXT  CC      ~s TEXT  SUBJECT
 *   ~b TEXT  BODY      ~B TEXT  TEXT     ~N / ~U  UNSEEN  ~R       SEEN
 *   ~F       FLAGGED   ~D       DELETED  ~Q       ANSWERED ~A / all  ALL
 *   TEXT alone: FROM or SUBJECT.  Terms side by side must all match;
 *   "!" before a term negates it. TEXT may be "quoted with spaces". */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "mua.h"

#define PATTERN_MAX_TERMS 32

static const struct {
	char letter;
	const char *key;
	bool takes_text;
} pattern_terms[] = {
	{'f', "FROM", true},     {'t', "TO", true},        {'c', "CC", true},
	{'s', "SUBJECT", true},  {'b', "BODY", true},      {'B', "TEXT", true},
	{'N', "UNSEEN", false},  {'U', "UNSEEN", false},   {'R', "SEEN", false},
	{'F', "FLAGGED", false}, {'D', "DELETED", false},  {'Q', "ANSWERED", false},
	{'A', "ALL", false},
};

/* Reads one word or "quoted string" at *p; returns it (caller frees) or NULL. */
static char *pattern_word(const char **p)
{
	while (**p == ' ')
		(*p)++;
	if (**p == '\0')
		return NULL;
	buf_t b = BUF_INIT;
	if (**p == '"') {
		(*p)++;
		while (**p != '\0' && **p != '"')
			buf_append_char(&b, *(*p)++);
		if (**p == '"')
			(*p)++;
	} else {
		while (**p != '\0' && **p != ' ')
			buf_append_char(&b, *(*p)++);
	}
	return buf_steal(&b);
}

/* Converts a pattern to SEARCH keys: 0 and *search_r, or -1 and *err_r. */
int mua_pattern_to_search(const char *pattern, char **search_r, char **err_r)
{
	buf_t out = BUF_INIT;
	const char *p = pattern != NULL ? pattern : "";
	size_t terms = 0;
	while (true) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		if (++terms > PATTERN_MAX_TERMS) {
			*err_r = xasprintf("more than %d terms", PATTERN_MAX_TERMS);
			buf_free(&out);
			return -1;
		}
		bool negate = *p == '!';
		if (negate)
			p++;
		if (out.len > 0)
			buf_append_char(&out, ' ');
		if (negate)
			buf_append_str(&out, "NOT ");
		if (*p == '~') {
			char letter = p[1];
			size_t i;
			for (i = 0; i < sizeof(pattern_terms) / sizeof(pattern_terms[0]); i++)
				if (pattern_terms[i].letter == letter)
					break;
			if (letter == '\0' || i == sizeof(pattern_terms) / sizeof(pattern_terms[0])) {
				*err_r = xasprintf("unknown pattern ~%c", letter != '\0' ? letter : ' ');
				buf_free(&out);
				return -1;
			}
			p += 2;
			buf_append_str(&out, pattern_terms[i].key);
			if (pattern_terms[i].takes_text) {
				char *word = pattern_word(&p);
				if (word == NULL || word[0] == '\0') {
					*err_r = xasprintf("~%c needs a text", letter);
					free(word);
					buf_free(&out);
					return -1;
				}
				char *q = imapc_quote(word);
				buf_printf(&out, " %s", q);
				free(q);
				free(word);
			}
			continue;
		}
		char *word = pattern_word(&p);
		if (strcmp(word, "all") == 0 || strcmp(word, ".") == 0) {
			buf_append_str(&out, "ALL");
		} else {
			char *q = imapc_quote(word);
			buf_printf(&out, "OR FROM %s SUBJECT %s", q, q);
			free(q);
		}
		free(word);
	}
	if (out.len == 0)
		buf_append_str(&out, "ALL");
	*search_r = buf_steal(&out);
	return 0;
}
