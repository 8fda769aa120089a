/* test_mime.c: MIME structure (RFC 2045/2046) as IMAP BODYSTRUCTURE needs it:
 * the tree, exact bodies and line counts, defaults, message/rfc822 children,
 * malformed shapes, limits, section numbers and body decoding. Every message
 * is also parsed at every prefix with the tree's offsets checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buffer.h"
#include "mime.h"

/* One node of a tree in pre-order: depth, type/subtype, exact body, lines. */
struct node {
	int depth;
	const char *type;
	const char *body; /* NULL: not checked (a container) */
	size_t lines;
};

/* Flattens a tree in pre-order into "depth type/subtype" checks. */
static void walk(const char *msg, const struct mime_part *p, int depth, const struct node *want,
		 size_t count, size_t *i, const char *label)
{
	if (*i >= count)
		fail_msg("%s: more parts than expected", label);
	const struct node *w = &want[(*i)++];
	char type[128];
	snprintf(type, sizeof(type), "%s/%s", p->type.type, p->type.subtype);
	if (w->depth != depth || strcmp(w->type, type) != 0)
		fail_msg("%s: part %zu is %d %s, expected %d %s", label, *i - 1, depth, type, w->depth,
			 w->type);
	if (w->body != NULL) {
		if (p->body_len != strlen(w->body) || memcmp(msg + p->body_offset, w->body, p->body_len) != 0)
			fail_msg("%s: part %zu body [%.*s]", label, *i - 1, (int)p->body_len,
				 msg + p->body_offset);
		if (p->body_lines != w->lines)
			fail_msg("%s: part %zu has %zu lines, expected %zu", label, *i - 1, p->body_lines,
				 w->lines);
	}
	for (size_t k = 0; k < p->child_count; k++)
		walk(msg, &p->children[k], depth + 1, want, count, i, label);
}

/* Checks invariants on any tree: offsets inside the message, containers non-empty. */
static size_t check_tree(const struct mime_part *p, size_t len, int depth)
{
	size_t parts = 1;
	assert_true(depth < MIME_MAX_DEPTH);
	assert_true(p->header_offset + p->header_len == p->body_offset);
	assert_true(p->body_offset + p->body_len <= len);
	assert_non_null(p->type.type);
	assert_non_null(p->type.subtype);
	assert_non_null(p->encoding);
	if (strcmp(p->type.type, "multipart") == 0)
		assert_true(p->child_count > 0);
	if (strcmp(p->type.type, "message") == 0 && strcmp(p->type.subtype, "rfc822") == 0) {
		assert_int_equal(p->child_count, 1);
		assert_non_null(p->message_header);
	}
	for (size_t k = 0; k < p->child_count; k++) {
		assert_true(p->children[k].header_offset >= p->body_offset);
		parts += check_tree(&p->children[k], len, depth + 1);
	}
	return parts;
}

static const char nested[] =
	"From: alice@example.test\r\n"
	"Subject: nested\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
	"\r\n"
	"This is the preamble.\r\n"
	"--outer\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"K=F6ln\r\n"
	"second line\r\n"
	"--inner\r\n"
	"Content-Type: multipart/related; boundary=\"rel\"\r\n"
	"\r\n"
	"--rel\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>hi</p>\r\n"
	"--rel\r\n"
	"Content-Type: image/png\r\n"
	"Content-ID: <img1@example.test>\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"iVBORw0KGgo=\r\n"
	"--rel--\r\n"
	"--inner--\r\n"
	"--outer\r\n"
	"Content-Type: message/rfc822\r\n"
	"Content-Description: forwarded\r\n"
	"\r\n"
	"From: bob@example.test\r\n"
	"Subject: inner message\r\n"
	"\r\n"
	"inner body\r\n"
	"--outer\r\n"
	"Content-Type: application/pdf; name=\"a.pdf\"\r\n"
	"Content-Disposition: attachment;\r\n filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n"
	"Content-Language: en, fr\r\n"
	"Content-Location: http://example.test/a.pdf\r\n"
	"Content-Transfer-Encoding: BASE64\r\n"
	"\r\n"
	"JVBERi0x\r\n"
	"--outer--\r\n"
	"This is the epilogue.\r\n";

static const struct node nested_tree[] = {
	{0, "multipart/mixed", NULL, 0},
	{1, "multipart/alternative", NULL, 0},
	{2, "text/plain", "K=F6ln\r\nsecond line", 2},
	{2, "multipart/related", NULL, 0},
	{3, "text/html", "<p>hi</p>", 1},
	{3, "image/png", "iVBORw0KGgo=", 1},
	{1, "message/rfc822", "From: bob@example.test\r\nSubject: inner message\r\n\r\ninner body", 4},
	{2, "text/plain", "inner body", 1},
	{1, "application/pdf", "JVBERi0x", 1},
};

/* A realistic nested message: tree, fields, section numbers, decoding. */
static void test_mime_nested(void **state)
{
	(void)state;
	struct mime_part root;
	size_t i = 0;
	assert_int_equal(mime_parse(nested, strlen(nested), &root), 0);
	walk(nested, &root, 0, nested_tree, sizeof(nested_tree) / sizeof(nested_tree[0]), &i, "nested");
	assert_int_equal(i, sizeof(nested_tree) / sizeof(nested_tree[0]));
	check_tree(&root, strlen(nested), 0);
	assert_string_equal(content_type_param(&root.type, "boundary"), "outer");

	const struct mime_part *png = mime_find_part(&root, "1.2.2");
	assert_non_null(png);
	assert_string_equal(png->id, "<img1@example.test>");
	assert_string_equal(png->encoding, "base64");
	const struct mime_part *msg = mime_find_part(&root, "2");
	assert_string_equal(msg->description, "forwarded");
	assert_string_equal(header_get(msg->message_header, "Subject"), "inner message");
	assert_ptr_equal(mime_find_part(&root, "2.1"), &msg->children[0]);
	const struct mime_part *pdf = mime_find_part(&root, "3");
	assert_string_equal(pdf->disposition.type, "attachment");
	assert_null(pdf->disposition.subtype);
	assert_string_equal(content_type_param(&pdf->disposition, "filename"),
			    "r\xc3\xa9sum\xc3\xa9.pdf");
	assert_string_equal(pdf->language, "en, fr");
	assert_string_equal(pdf->location, "http://example.test/a.pdf");
	assert_string_equal(pdf->encoding, "base64");
	/* The MIME header of part 1.1 is exactly its two fields and the blank line. */
	const struct mime_part *plain = mime_find_part(&root, "1.1");
	assert_int_equal(plain->header_len, strlen("Content-Type: text/plain; charset=iso-8859-1\r\n"
						   "Content-Transfer-Encoding: quoted-printable\r\n\r\n"));
	static const char *const missing[] = {"0", "4", "1.3", "1.1.1", "2.2", "1..1", "1.", "x",
					      "01", "3.1"};
	for (size_t k = 0; k < sizeof(missing) / sizeof(missing[0]); k++)
		if (mime_find_part(&root, missing[k]) != NULL)
			fail_msg("section %s should not exist", missing[k]);
	assert_ptr_equal(mime_find_part(&root, ""), &root);

	char *out;
	size_t n;
	assert_int_equal(mime_decode_body(nested, plain, true, &out, &n), 0);
	assert_string_equal(out, "K\xc3\xb6ln\r\nsecond line");
	free(out);
	assert_int_equal(mime_decode_body(nested, plain, false, &out, &n), 0);
	assert_string_equal(out, "K\xf6ln\r\nsecond line");
	free(out);
	assert_int_equal(mime_decode_body(nested, pdf, false, &out, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(out, "%PDF-1", 6);
	free(out);
	mime_part_free(&root);
	assert_null(root.children);
}

/* A message with no MIME header: text/plain; charset=us-ascii, 7bit, part 1 is the root. */
static void test_mime_defaults(void **state)
{
	(void)state;
	const char *m = "From: a@b\r\nSubject: s\r\n\r\nHello\r\nWorld\r\n";
	struct mime_part root;
	mime_parse(m, strlen(m), &root);
	assert_string_equal(root.type.type, "text");
	assert_string_equal(root.type.subtype, "plain");
	assert_string_equal(content_type_param(&root.type, "charset"), "us-ascii");
	assert_string_equal(root.encoding, "7bit");
	assert_null(root.disposition.type);
	assert_null(root.id);
	assert_int_equal(root.header_len, 25);
	assert_int_equal(root.body_len, 14);
	assert_int_equal(root.body_lines, 2);
	assert_ptr_equal(mime_find_part(&root, "1"), &root);
	assert_null(mime_find_part(&root, "2"));
	assert_null(mime_find_part(&root, "1.1"));
	mime_part_free(&root);
}

static const struct {
	const char *label, *msg;
	struct node tree[6];
	size_t count;
} shapes[] = {
	{"bare LF line ends",
	 "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: text/html\n\n<b>\n--b--\n",
	 {{0, "multipart/mixed", NULL, 0}, {1, "text/plain", "one", 1}, {1, "text/html", "<b>", 1}}, 3},
	{"missing close delimiter",
	 "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\nlast\r\n",
	 {{0, "multipart/mixed", NULL, 0}, {1, "text/plain", "one", 1},
	  {1, "text/plain", "two\r\nlast\r\n", 2}}, 3},
	{"no boundary parameter",
	 "Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\none\r\n",
	 {{0, "text/plain", "--b\r\n\r\none\r\n", 3}}, 1},
	{"boundary never appears",
	 "Content-Type: multipart/mixed; boundary=zzz\r\n\r\n--b\r\n\r\none\r\n",
	 {{0, "text/plain", "--b\r\n\r\none\r\n", 3}}, 1},
	{"delimiters only at line starts and followed by blanks only",
	 "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx --b\r\n--bb\r\n--b-- z\r\n--b  \r\n\r\ny\r\n--b--\t\r\n",
	 {{0, "multipart/mixed", NULL, 0}, {1, "text/plain", "x --b\r\n--bb\r\n--b-- z", 3},
	  {1, "text/plain", "y", 1}}, 3},
	{"empty parts",
	 "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n--b--",
	 {{0, "multipart/mixed", NULL, 0}, {1, "text/plain", "", 0}, {1, "text/plain", "", 0}}, 3},
	{"digest children default to message/rfc822",
	 "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody1\r\n--d\r\nContent-Type: text/plain\r\n\r\nplain\r\n--d--\r\n",
	 {{0, "multipart/digest", NULL, 0}, {1, "message/rfc822", "Subject: one\r\n\r\nbody1", 3},
	  {2, "text/plain", "body1", 1}, {1, "text/plain", "plain", 1}}, 4},
	{"bad content type",
	 "Content-Type: garbage\r\n\r\nbody",
	 {{0, "text/plain", "body", 1}}, 1},
	{"part header without blank line",
	 "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n--b\r\nno header here\r\n--b--\r\n",
	 {{0, "multipart/mixed", NULL, 0}, {1, "text/html", "", 0}, {1, "text/plain", "no header here", 1}}, 3},
	{"message/rfc822 inner multipart",
	 "Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x--\r\n",
	 {{0, "message/rfc822", NULL, 0}, {1, "multipart/mixed", NULL, 0}, {2, "text/plain", "a", 1}}, 3},
	{"no header at all", "", {{0, "text/plain", "", 0}}, 1},
};

/* Malformed and unusual shapes, and every prefix of each. */
static void test_mime_shapes(void **state)
{
	(void)state;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		const char *m = shapes[s].msg;
		size_t len = strlen(m);
		struct mime_part root;
		size_t i = 0;
		mime_parse(m, len, &root);
		walk(m, &root, 0, shapes[s].tree, shapes[s].count, &i, shapes[s].label);
		if (i != shapes[s].count)
			fail_msg("%s: %zu parts, expected %zu", shapes[s].label, i, shapes[s].count);
		check_tree(&root, len, 0);
		mime_part_free(&root);
		for (size_t n = 0; n < len; n++) {
			char *copy = malloc(n + 1);
			memcpy(copy, m, n);
			mime_parse(copy, n, &root);
			check_tree(&root, n, 0);
			mime_part_free(&root);
			free(copy);
		}
	}
	size_t len = strlen(nested);
	for (size_t n = 0; n < len; n++) {
		struct mime_part root;
		char *copy = malloc(n + 1);
		memcpy(copy, nested, n);
		mime_parse(copy, n, &root);
		check_tree(&root, n, 0);
		mime_part_free(&root);
		free(copy);
	}
}

/* Depth: 100 nested message/rfc822 parts stop at MIME_MAX_DEPTH as a text leaf. */
static void test_mime_depth_limit(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	for (int i = 0; i < 100; i++)
		buf_append_str(&b, "Content-Type: message/rfc822\r\n\r\n");
	buf_append_str(&b, "Subject: bottom\r\n\r\nbody\r\n");
	struct mime_part root;
	mime_parse(b.data, b.len, &root);
	check_tree(&root, b.len, 0);
	const struct mime_part *p = &root;
	int depth = 0;
	while (p->child_count > 0) {
		p = &p->children[0];
		depth++;
	}
	assert_int_equal(depth, MIME_MAX_DEPTH - 1);
	assert_string_equal(p->type.type, "text");
	mime_part_free(&root);
	buf_free(&b);
}

/* Part count: a multipart with more than MIME_MAX_PARTS parts is cut at the limit. */
static void test_mime_part_limit(void **state)
{
	(void)state;
	buf_t b = BUF_INIT;
	buf_append_str(&b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < MIME_MAX_PARTS + 50; i++)
		buf_append_str(&b, "--b\r\n\r\nx\r\n");
	buf_append_str(&b, "--b--\r\n");
	struct mime_part root;
	mime_parse(b.data, b.len, &root);
	size_t parts = check_tree(&root, b.len, 0);
	assert_int_equal(parts, MIME_MAX_PARTS);
	assert_int_equal(root.child_count, MIME_MAX_PARTS - 1);
	mime_part_free(&root);
	buf_free(&b);
}

/* Body decoding: base64 with junk ignored (RFC 2045 6.8), unknown charsets kept. */
static void test_mime_decode(void **state)
{
	(void)state;
	static const struct { const char *msg, *out; } cases[] = {
		{"Content-Transfer-Encoding: base64\r\n\r\nSGVs\r\nbG8*\r\n", "Hello"},
		{"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--junk--\r\n", "Hello"},
		{"Content-Type: text/plain; charset=x-unknown\r\n\r\n\xe9t\xe9", "\xe9t\xe9"},
		{"Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: "
		 "quoted-printable\r\n\r\n=80 5=\r\n0", "\xe2\x82\xac 50"},
		{"Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xff byte",
		 "bad \xef\xbf\xbd byte"},
		{"Content-Transfer-Encoding: 8bit\r\n\r\n", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mime_part root;
		char *out;
		size_t n;
		mime_parse(cases[i].msg, strlen(cases[i].msg), &root);
		assert_int_equal(mime_decode_body(cases[i].msg, &root, true, &out, &n), 0);
		assert_int_equal(n, strlen(cases[i].out));
		assert_string_equal(out, cases[i].out);
		free(out);
		mime_part_free(&root);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mime_nested),
		cmocka_unit_test(test_mime_defaults),
		cmocka_unit_test(test_mime_shapes),
		cmocka_unit_test(test_mime_depth_limit),
		cmocka_unit_test(test_mime_part_limit),
		cmocka_unit_test(test_mime_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
