/* message.c: a received message shared by its recipients' deliveries.
 *
 * The bytes, the envelope sender, the lifecycle id and the parsed header are
 * made once and shared; the reference count is touched only on the loop
 * thread (workers read the bytes while a delivery holds a reference). */
#include <stdlib.h>

#include "buffer.h"
#include "mda.h"

/* Takes ownership of data (CRLF lines). */
struct mda_message *mda_message_new(char *data, size_t len, const char *sender,
				    const char *lifecycle_id)
{
	struct mda_message *m = xcalloc(1, sizeof(*m));
	m->refs = 1;
	m->data = data;
	m->len = len;
	m->sender = xstrdup(sender != NULL ? sender : "");
	m->lifecycle_id = xstrdup(lifecycle_id);
	header_parse(m->data, m->len, &m->header);
	return m;
}

struct mda_message *mda_message_ref(struct mda_message *m)
{
	m->refs++;
	return m;
}

void mda_message_unref(struct mda_message **mp)
{
	struct mda_message *m = *mp;
	if (m == NULL)
		return;
	*mp = NULL;
	if (--m->refs > 0)
		return;
	header_free(&m->header);
	free(m->data);
	free(m->sender);
	free(m->lifecycle_id);
	free(m);
}
