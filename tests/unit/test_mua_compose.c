/* test_mua_compose.c: the mua's message code: building messages (compose.c),
 * replies and forwards, header injection, attachments that round-trip through
 * the MIME parser, reading (msgview.c), threading (thread.c) and search
 * patterns (pattern.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "buffer.h"
#include "compose.h"
#include "header.h"
#include "mime.h"
#include "mua.h"

/* Every line ends in CRLF and none passes 998 octets. */
static void assert_wire_format(const char *msg, size_t len)
{
	size_t column = 0;
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n') {
			assert_true(i > 0 && msg[i - 1] == '\r');
			column = 0;
			continue;
		}
		if (msg[i] == '\r')
			assert_true(i + 1 < len && msg[i + 1] == '\n');
		column++;
		assert_true(column <= COMPOSE_MAX_LINE + 1);
	}
	assert_true(len >= 2 && msg[len - 2] == '\r' && msg[len - 1] == '\n');
}

/* Builds m or fails the test. */
static char *build(const struct compose_message *m, size_t *len_r)
{
	char *out = NULL, *err = NULL;
	int rc = compose_build(m, &out, len_r, &err);
	if (rc < 0)
		fail_msg("compose_build: %s", err);
	assert_wire_format(out, *len_r);
	return out;
}

static void test_plain_ascii(void **state)
{
	struct compose_message m = {.from = "alice@example.test", .to = "Bob <bob@example.test>",
				    .subject = "Hello", .body = "line one\nline two\n",
				    .date = 1700000000, .tz_minutes = 60};
	size_t len;
	char *msg = build(&m, &len);
	struct header h;
	header_parse(msg, len, &h);
	assert_string_equal(header_get(&h, "Date"), "Tue, 14 Nov 2023 23:13:20 +0100");
	assert_string_equal(header_get(&h, "From"), "alice@example.test");
	assert_string_equal(header_get(&h, "To"), "Bob <bob@example.test>");
	assert_string_equal(header_get(&h, "Subject"), "Hello");
	assert_string_equal(header_get(&h, "Content-Transfer-Encoding"), "7bit");
	assert_string_equal(header_get(&h, "MIME-Version"), "1.0");
	const char *id = header_get(&h, "Message-ID");
	assert_non_null(id);
	assert_int_equal(id[0], '<');
	assert_non_null(strstr(id, "@example.test>"));
	assert_null(header_get(&h, "Bcc"));
	assert_non_null(strstr(msg, "\r\n\r\nline one\r\nline two\r\n"));
	header_free(&h);
	free(msg);
}

static void test_utf8_encoded(void **state)
{
	struct compose_message m = {.from = "\"Zoë Ünal\" <zoe@example.test>",
				    .to = "bob@example.test", .subject = "Grüße aus Köln",
				    .body = "Schöne Grüße\n"};
	size_t len;
	char *msg = build(&m, &len);
	for (size_t i = 0; i < len; i++)
		assert_true((unsigned char)msg[i] < 0x80);
	struct header h;
	header_parse(msg, len, &h);
	char *subject = header_decode_words(header_get(&h, "Subject"));
	assert_string_equal(subject, "Grüße aus Köln");
	free(subject);
	char *from = header_decode_words(header_get(&h, "From"));
	assert_non_null(strstr(from, "Zoë Ünal"));
	assert_non_null(strstr(from, "<zoe@example.test>"));
	free(from);
	assert_string_equal(header_get(&h, "Content-Transfer-Encoding"), "quoted-printable");
	assert_non_null(strstr(header_get(&h, "Content-Type"), "charset=utf-8"));
	header_free(&h);
	struct mime_part root;
	mime_parse(msg, len, &root);
	char *text;
	size_t text_len;
	assert_int_equal(mime_decode_body(msg, &root, true, &text, &text_len), 0);
	assert_string_equal(text, "Schöne Grüße\r\n");
	free(text);
	mime_part_free(&root);
	free(msg);
}

static void test_long_line_is_qp(void **state)
{
	char *body = xmalloc(5001);
	memset(body, 'x', 5000);
	body[5000] = '\0';
	struct compose_message m = {.from = "a@example.test", .to = "b@example.test",
				    .subject = "long", .body = body};
	size_t len;
	char *msg = build(&m, &len); /* checks the 998 limit */
	assert_non_null(strstr(msg, "Content-Transfer-Encoding: quoted-printable"));
	struct mime_part root;
	mime_parse(msg, len, &root);
	char *text;
	size_t text_len;
	assert_int_equal(mime_decode_body(msg, &root, false, &text, &text_len), 0);
	assert_int_equal(text_len, 5002); /* the text part ends with a line break */
	assert_memory_equal(text + 5000, "\r\n", 2);
	free(text);
	mime_part_free(&root);
	free(msg);
	free(body);
}

/* CR and LF typed into fields never start another header field. */
static void test_header_injection(void **state)
{
	struct compose_message m = {.from = "a@example.test", .to = "b@example.test\r\nBcc: x@evil.test",
				    .subject = "Hi\r\nBcc: evil@example.test\nX-Evil: 1",
				    .body = "body\n", .in_reply_to = "<a@b>\r\nX-Evil: 2"};
	size_t len;
	char *out = NULL, *err = NULL;
	int rc = compose_build(&m, &out, &len, &err);
	if (rc == 0) {
		assert_wire_format(out, len);
		struct header h;
		header_parse(out, len, &h);
		assert_null(header_get(&h, "Bcc"));
		assert_null(header_get(&h, "X-Evil"));
		header_free(&h);
	} else {
		assert_non_null(err); /* refusing the To field is fine as well */
	}
	free(out);
	free(err);
	char *clean = compose_header_clean("  a\r\nb\tc\x01 ");
	assert_string_equal(clean, "a  b\tc");
	free(clean);
	/* The subject alone, with the address list valid. */
	m.to = "b@example.test";
	char *msg = build(&m, &len);
	struct header h;
	header_parse(msg, len, &h);
	assert_null(header_get(&h, "Bcc"));
	assert_null(header_get(&h, "X-Evil"));
	assert_string_equal(header_get(&h, "Subject"), "Hi  Bcc: evil@example.test X-Evil: 1");
	header_free(&h);
	free(msg);
}

static void test_bad_addresses(void **state)
{
	const char *bad[] = {"bob", "bob@", "@example.test", "a b@c", "bob@example.test, nope"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct compose_message m = {.from = "a@example.test", .to = bad[i], .subject = "s",
					    .body = ""};
		char *out = NULL, *err = NULL;
		size_t len;
		assert_int_equal(compose_build(&m, &out, &len, &err), -1);
		assert_non_null(strstr(err, "To: "));
		free(err);
	}
	char **addrs;
	size_t count;
	char *header, *err = NULL;
	assert_int_equal(compose_parse_recipients("Bob <bob@x.test>, carol@y.test, BOB@x.test",
						  &addrs, &count, &header, &err), 0);
	assert_int_equal(count, 2);
	assert_string_equal(addrs[0], "bob@x.test");
	assert_string_equal(addrs[1], "carol@y.test");
	compose_free_list(&addrs, count);
	free(header);
	struct compose_message m = {.from = "a@example.test", .to = "b@x.test", .cc = "c@x.test",
				    .bcc = "d@x.test, b@x.test"};
	assert_int_equal(compose_envelope_recipients(&m, &addrs, &count, &err), 0);
	assert_int_equal(count, 3);
	assert_string_equal(addrs[2], "d@x.test");
	compose_free_list(&addrs, count);
}

/* Attachments: multipart/mixed, base64, every byte back through the parser. */
static void test_attachments_roundtrip(void **state)
{
	char bin[3000];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (char)(i * 7 + 3);
	struct compose_attachment atts[2] = {
		{.filename = "photo.png", .data = bin, .len = sizeof(bin)},
		{.filename = "Überblick.pdf", .content_type = "application/pdf", .data = "%PDF",
		 .len = 4},
	};
	struct compose_message m = {.from = "a@example.test", .to = "b@example.test",
				    .subject = "files", .body = "see attached\n",
				    .attachments = atts, .attachment_count = 2};
	size_t len;
	char *msg = build(&m, &len);
	struct mime_part root;
	mime_parse(msg, len, &root);
	assert_string_equal(root.type.type, "multipart");
	assert_string_equal(root.type.subtype, "mixed");
	assert_int_equal(root.child_count, 3);
	assert_string_equal(root.children[1].type.subtype, "png");
	assert_string_equal(root.children[1].encoding, "base64");
	assert_string_equal(content_type_param(&root.children[1].disposition, "filename"),
			    "photo.png");
	assert_string_equal(content_type_param(&root.children[2].disposition, "filename"),
			    "Überblick.pdf");
	char *data;
	size_t data_len;
	assert_int_equal(mime_decode_body(msg, &root.children[1], false, &data, &data_len), 0);
	assert_int_equal(data_len, sizeof(bin));
	assert_memory_equal(data, bin, sizeof(bin));
	free(data);
	mime_part_free(&root);
	/* The reader lists them with their decoded sizes. */
	struct msgview *v = msgview_new(msg, len);
	assert_int_equal(v->attachment_count, 2);
	assert_string_equal(v->attachments[0].filename, "photo.png");
	assert_int_equal(v->attachments[0].size, sizeof(bin));
	assert_int_equal(msgview_attachment_data(v, 0, &data, &data_len), 0);
	assert_memory_equal(data, bin, sizeof(bin));
	free(data);
	assert_non_null(strstr(v->text, "see attached"));
	assert_non_null(strstr(v->text, "[-- Attachment #1: photo.png (image/png, 3000 bytes) --]"));
	msgview_free(&v);
	assert_null(v);
	free(msg);
	assert_string_equal(compose_guess_type("a.JPG"), "image/jpeg");
	assert_string_equal(compose_guess_type("noext"), "application/octet-stream");
	assert_string_equal(compose_guess_type("dir.d/file"), "application/octet-stream");
}

static void test_reply_and_forward(void **state)
{
	char *s = compose_reply_subject("Lunch");
	assert_string_equal(s, "Re: Lunch");
	free(s);
	s = compose_reply_subject("RE: Lunch");
	assert_string_equal(s, "RE: Lunch");
	free(s);
	s = compose_forward_subject("Fw: x");
	assert_string_equal(s, "Fw: x");
	free(s);
	s = compose_forward_subject("x");
	assert_string_equal(s, "Fwd: x");
	free(s);
	s = compose_reply_references("<a@x> <b@x>", "<b@x>", "<c@x>");
	assert_string_equal(s, "<a@x> <b@x> <c@x>");
	free(s);
	s = compose_reply_references(NULL, "<b@x> (comment)", "<c@x>");
	assert_string_equal(s, "<b@x> <c@x>");
	free(s);
	assert_null(compose_reply_references(NULL, NULL, ""));
	/* A long chain keeps the first and the newest ids. */
	buf_t refs = BUF_INIT;
	for (int i = 0; i < 30; i++)
		buf_printf(&refs, "<%d@x> ", i);
	s = compose_reply_references(buf_cstr(&refs), NULL, "<new@x>");
	assert_true(strncmp(s, "<0@x> <12@x>", 12) == 0);
	assert_non_null(strstr(s, "<29@x> <new@x>"));
	free(s);
	buf_free(&refs);
	s = compose_quote_body("hi\r\n> old\n\nbye", "Mon, 1 Jan 2024", "Bob");
	assert_string_equal(s, "On Mon, 1 Jan 2024, Bob wrote:\n> hi\n>> old\n>\n> bye\n");
	free(s);
	s = compose_forward_body("Bob <b@x>", "today", "S", "a@x", "text\n");
	assert_non_null(strstr(s, "---------- Forwarded message ----------\nFrom: Bob <b@x>\n"));
	assert_non_null(strstr(s, "\n\ntext\n"));
	free(s);
	char *to, *cc;
	compose_reply_recipients("Bob <bob@x.test>", NULL, "alice@x.test, carol@x.test",
				 "dave@x.test, bob@x.test", "alice@x.test", true, &to, &cc);
	assert_string_equal(to, "Bob <bob@x.test>");
	assert_string_equal(cc, "carol@x.test, dave@x.test");
	free(to);
	free(cc);
	compose_reply_recipients("Bob <bob@x.test>", "list@x.test", "alice@x.test", NULL,
				 "alice@x.test", false, &to, &cc);
	assert_string_equal(to, "list@x.test");
	assert_string_equal(cc, "");
	free(to);
	free(cc);
	/* Replying to one's own message goes to its recipients. */
	compose_reply_recipients("alice@x.test", NULL, "bob@x.test", NULL, "alice@x.test", false,
				 &to, &cc);
	assert_string_equal(to, "bob@x.test");
	free(to);
	free(cc);
}

static void test_msgview_alternative_and_html(void **state)
{
	const char *msg =
		"From: =?UTF-8?Q?Zo=C3=AB?= <z@x>\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n"
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 plain\r\n"
		"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n";
	struct msgview *v = msgview_new(msg, strlen(msg));
	assert_string_equal(v->subject, "café");
	assert_non_null(strstr(v->text, "From: Zoë <z@x>"));
	assert_non_null(strstr(v->text, "café plain"));
	assert_null(strstr(v->text, "html"));
	msgview_free(&v);
	const char *html = "<html><head><style>x{}</style></head><body><p>Hello&nbsp;&amp; "
			   "<b>bye</b></p><br>caf&#233;</body></html>";
	char *text = msgview_html_to_text(html, strlen(html));
	assert_string_equal(text, "Hello & bye\n\ncafé\n");
	free(text);
	/* Malformed MIME is shown, not refused. */
	const char *bad = "Content-Type: multipart/mixed; boundary=zz\r\n\r\nno parts here\r\n";
	v = msgview_new(bad, strlen(bad));
	assert_non_null(v->text);
	msgview_free(&v);
}

/* The index's date order: Date headers out of UID order, a missing and a
 * garbled Date falling back to INTERNALDATE, none at all counting as oldest
 * (ties by UID), and an INTERNALDATE read with its zone. */
static void test_date_order(void **state)
{
	(void)state;
	static const struct {
		const char *date, *internaldate;
		uint32_t uid;
	} msgs[] = {
		{"Mon, 01 Jan 2024 12:00:00 +0000", " 1-Jan-2024 12:05:00 +0000", 1},
		{"Mon, 01 Jan 2024 10:00:00 +0000", " 1-Jan-2024 12:06:00 +0000", 2},
		{NULL, " 1-Jan-2024 11:00:00 +0000", 3},            /* no Date */
		{"yesterday-ish", "01-Jan-2024 10:30:00 +0000", 4}, /* garbled Date */
		{"Mon, 01 Jan 2024 06:00:00 -0500", NULL, 5},        /* 11:00 UTC, ties with 3 */
		{NULL, NULL, 7},                                     /* nothing: the oldest */
		{"not a date", "garbage", 6},                        /* nothing either, lower UID */
	};
	size_t n = sizeof(msgs) / sizeof(msgs[0]);
	struct thread_input in[sizeof(msgs) / sizeof(msgs[0])];
	memset(in, 0, sizeof(in));
	for (size_t i = 0; i < n; i++) {
		in[i].date = thread_date_value(msgs[i].date);
		in[i].internal_date = thread_internaldate_value(msgs[i].internaldate);
		in[i].uid = msgs[i].uid;
	}
	assert_int_equal(in[3].date, 0);
	assert_int_equal(in[2].internal_date, 1704106800);
	assert_int_equal(in[4].date, 1704106800);
	assert_int_equal(thread_internaldate_value("17-Jul-1996 02:44:25 -0700"), 837596665);
	size_t *order;
	thread_date_order(in, n, &order);
	size_t want[] = {6, 5, 1, 3, 2, 4, 0};
	for (size_t i = 0; i < n; i++)
		assert_int_equal(order[i], want[i]);
	free(order);
	/* Threads use the same fallback: the root without a Date sorts by INTERNALDATE. */
	struct thread_input t[] = {
		{"<a@x>", NULL, NULL, "A", 0, 300, 1},
		{"<b@x>", NULL, NULL, "B", 200, 100, 2},
		{"<c@x>", NULL, NULL, "C", 0, 0, 3},
	};
	unsigned *depth;
	thread_order(t, 3, &order, &depth);
	assert_int_equal(order[0], 2);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 0);
	free(order);
	free(depth);
}

static void test_threads(void **state)
{
	struct thread_input in[] = {
		{"<a@x>", NULL, NULL, "Lunch", 100, 0, 0},
		{"<b@x>", "<a@x>", "<a@x>", "Re: Lunch", 300, 0, 0},
		{"<c@x>", NULL, NULL, "Other", 200, 0, 0},
		{"<d@x>", NULL, "<a@x> <b@x>", "Re: Lunch", 400, 0, 0},
		{"<e@x>", NULL, NULL, "Re: Other", 500, 0, 0}, /* subject fallback */
		{"<f@x>", "<g@x>", NULL, "loop", 600, 0, 0},
		{"<g@x>", "<f@x>", NULL, "loop", 700, 0, 0},   /* a cycle is broken */
	};
	size_t *order;
	unsigned *depth;
	thread_order(in, 7, &order, &depth);
	/* f takes g as parent first, so g's link back to f is the one dropped. */
	size_t want_order[] = {0, 1, 3, 2, 4, 6, 5};
	unsigned want_depth[] = {0, 1, 2, 0, 1, 0, 1};
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(order[i], want_order[i]);
		assert_int_equal(depth[i], want_depth[i]);
	}
	free(order);
	free(depth);
	char *base = thread_base_subject("Re: Fwd: [list] Re: Hello ");
	assert_string_equal(base, "Hello");
	free(base);
}

static void test_patterns(void **state)
{
	static const struct {
		const char *pattern, *search;
	} cases[] = {
		{"~f alice ~N", "FROM \"alice\" UNSEEN"},
		{"~s \"two words\"", "SUBJECT \"two words\""},
		{"!~F ~b x", "NOT FLAGGED BODY \"x\""},
		{"hello", "OR FROM \"hello\" SUBJECT \"hello\""},
		{"", "ALL"},
		{"~D ~Q", "DELETED ANSWERED"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *search = NULL, *err = NULL;
		assert_int_equal(mua_pattern_to_search(cases[i].pattern, &search, &err), 0);
		assert_string_equal(search, cases[i].search);
		free(search);
	}
	char *search = NULL, *err = NULL;
	assert_int_equal(mua_pattern_to_search("~z", &search, &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(mua_pattern_to_search("~f", &search, &err), -1);
	free(err);
	/* A quote in the text cannot break out of the IMAP string. */
	assert_int_equal(mua_pattern_to_search("~s a\"b", &search, &err), 0);
	assert_string_equal(search, "SUBJECT \"a\\\"b\"");
	free(search);
}

/* POP3: a UIDL listing keeps what the cache knew (by UID, not by number),
 * headers from TOP fill the index fields, and the cache file round-trips. */
static void test_pop3_box(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_mua_pop3_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/sub/cache", dir);
	struct pop3box *b = pop3box_new(path);
	assert_int_equal(pop3box_count(b), 0);
	pop3box_take_uidl(b, "1 aaa\r\n2 bbb\r\nbad line\r\n3 ccc\r\n");
	assert_int_equal(pop3box_count(b), 3);
	struct pop3_entry *e = pop3box_entry(b, 2);
	assert_string_equal(e->uidl, "bbb");
	assert_false(e->have_headers);
	const char *hdr = "From: =?UTF-8?Q?J=C3=BCrgen?= <j@x.test>\r\nSubject: Hi\tthere\r\n"
			  "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@x>\r\n"
			  "In-Reply-To: <m0@x>\r\nContent-Type: multipart/mixed; b=1\r\n\r\n";
	pop3_entry_set_headers(e, hdr, strlen(hdr));
	assert_string_equal(e->from, "Jürgen");
	assert_string_equal(e->from_addr, "j@x.test");
	assert_string_equal(e->subject, "Hi there");
	assert_string_equal(e->message_id, "<m1@x>");
	assert_string_equal(e->in_reply_to, "<m0@x>");
	assert_int_equal(e->time, 1704103200);
	assert_true(e->attachment);
	e->flags = MF_SEEN | MF_FLAGGED;
	char *err = NULL;
	assert_int_equal(pop3box_save(b, &err), 0);
	/* Another client deleted message 1: bbb is now number 1 and keeps its flags. */
	pop3box_take_uidl(b, "1 bbb\r\n2 ccc\r\n3 ddd\r\n");
	assert_int_equal(pop3box_count(b), 3);
	assert_string_equal(pop3box_entry(b, 1)->uidl, "bbb");
	assert_int_equal(pop3box_entry(b, 1)->number, 1);
	assert_int_equal(pop3box_entry(b, 1)->flags, MF_SEEN | MF_FLAGGED);
	assert_true(pop3box_entry(b, 1)->have_headers);
	assert_false(pop3box_entry(b, 3)->have_headers);
	pop3box_free(&b);
	/* A new session reads the cache file: only bbb had headers. */
	b = pop3box_new(path);
	assert_int_equal(pop3box_count(b), 1);
	e = pop3box_entry(b, 1);
	assert_string_equal(e->uidl, "bbb");
	assert_string_equal(e->subject, "Hi there");
	assert_string_equal(e->from, "Jürgen");
	assert_int_equal(e->flags, MF_SEEN | MF_FLAGGED);
	assert_true(e->attachment);
	pop3box_free(&b);
	unlink(path);
	free(path);
	path = xasprintf("%s/sub", dir);
	rmdir(path);
	free(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_ascii),
		cmocka_unit_test(test_utf8_encoded),
		cmocka_unit_test(test_long_line_is_qp),
		cmocka_unit_test(test_header_injection),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_attachments_roundtrip),
		cmocka_unit_test(test_reply_and_forward),
		cmocka_unit_test(test_msgview_alternative_and_html),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_date_order),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_pop3_box),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
