/* ui_pager.c: the pager (one message, wrapped to the screen) and the
 * attachment list with saving.
 *
 * The pager's lines are computed at draw time from the message text and the
 * current width, so a resize rewraps at once: a logical line breaks at the
 * last column that fits (wcwidth), never inside a character. Header names,
 * quoted lines ("> ...") and attachment lines are coloured. */
#include <curses.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wchar.h>

#include "buffer.h"
#include "ui.h"

/* Bytes of text that fit in width columns (at least one character). */
static size_t ui_fit(const char *text, size_t len, int width)
{
	mbstate_t st;
	memset(&st, 0, sizeof(st));
	size_t pos = 0;
	int used = 0;
	while (pos < len) {
		int w; /* a tab counts one: wcwidth gives it -1 */
		size_t n = ui_next_char(text + pos, len - pos, &st, &w);
		if (used + w > width && pos > 0)
			break;
		used += w;
		pos += n;
	}
	return pos;
}

struct pager_line {
	size_t offset, len;
	bool continued; /* a wrapped piece of the line above */
};

/* Splits text into screen lines for width columns. */
static struct pager_line *ui_pager_wrap(const char *text, int width, size_t *count_r)
{
	struct pager_line *lines = NULL;
	size_t count = 0, cap = 0;
	size_t len = strlen(text), pos = 0;
	while (pos < len) {
		const char *eol = memchr(text + pos, '\n', len - pos);
		size_t line_len = eol != NULL ? (size_t)(eol - (text + pos)) : len - pos;
		size_t done = 0;
		bool first = true;
		do {
			size_t n = ui_fit(text + pos + done, line_len - done, width);
			if (count == cap) {
				cap = cap == 0 ? 256 : cap * 2;
				lines = xrealloc(lines, cap * sizeof(*lines));
			}
			lines[count].offset = pos + done;
			lines[count].len = n;
			lines[count].continued = !first;
			count++;
			done += n;
			first = false;
		} while (done < line_len);
		pos += line_len + 1;
	}
	*count_r = count;
	return lines;
}

/* The text the pager shows now. */
static char *ui_pager_text(const struct ui *ui)
{
	if (ui->all_headers)
		return xasprintf("%s\n%s", ui->view->all_headers, ui->view->body_text);
	return xstrdup(ui->view->text);
}

/* Shows a message in the pager. */
void ui_pager_show(struct ui *ui, struct msgview *view, uint32_t seq, bool preview)
{
	if (view != ui->view) {
		msgview_free(&ui->view);
		ui->view = view;
	}
	ui->view_seq = seq;
	ui->view_is_preview = preview;
	ui->pager_top = 0;
	ui->attach_cursor = 0;
	if (!preview) {
		struct ui_msg *m = ui_msg_at(ui, seq);
		if (m != NULL)
			m->flags |= UF_SEEN;
		/* The index follows the pager. */
		for (size_t r = 0; r < ui_row_count(ui); r++)
			if (ui_row_seq(ui, r) == seq) {
				ui->cursor = r;
				break;
			}
	}
	ui_enter_screen(ui, SCR_PAGER);
}

static void ui_pager_put_line(struct ui *ui, int y, const char *piece);

/* Draws the pager. */
void ui_pager_draw(struct ui *ui, int rows)
{
	if (ui->view == NULL)
		return;
	char *text = ui_pager_text(ui);
	size_t count;
	struct pager_line *lines = ui_pager_wrap(text, COLS, &count);
	if (ui->pager_top + 1 > count)
		ui->pager_top = count > 0 ? count - 1 : 0;
	bool in_header = true;
	/* Header state depends on lines above the top: find the first blank line. */
	size_t header_end = count;
	for (size_t i = 0; i < count; i++)
		if (lines[i].len == 0 && !lines[i].continued) {
			header_end = i;
			break;
		}
	for (int r = 0; r < rows; r++) {
		size_t i = ui->pager_top + (size_t)r;
		if (i >= count) {
			ui_put(1 + r, 0, COLS, i == count ? "(end of message)" : "", true);
			continue;
		}
		in_header = i < header_end;
		char *piece = xstrndup(text + lines[i].offset, lines[i].len);
		const char *start = text + lines[i].offset;
		/* The first piece of the logical line decides its colour. */
		size_t k = i;
		while (k > 0 && lines[k].continued)
			k--;
		const char *logical = text + lines[k].offset;
		int attr = 0;
		if (in_header) {
			const char *colon = memchr(start, ':', lines[i].len);
			if (!lines[i].continued && colon != NULL) {
				attron(COLOR_PAIR(4) | A_BOLD);
				char *name = xstrndup(start, (size_t)(colon - start + 1));
				int used = ui_put(1 + r, 0, COLS, name, false);
				attroff(COLOR_PAIR(4) | A_BOLD);
				ui_put(1 + r, used, COLS - used, piece + (colon - start + 1), true);
				free(name);
				free(piece);
				continue;
			}
		} else if (logical[0] == '>') {
			attr = COLOR_PAIR(1);
		} else if (strncmp(logical, "[-- ", 4) == 0) {
			attr = COLOR_PAIR(2) | A_BOLD;
		}
		if (attr != 0)
			attron(attr);
		ui_pager_put_line(ui, 1 + r, piece);
		if (attr != 0)
			attroff(attr);
		free(piece);
	}
	free(lines);
	free(text);
}

/* Finds the text in a screen line, ignoring ASCII case: its offset, or -1. */
static long ui_line_find(const char *line, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; n > 0 && i + n <= len; i++)
		if (strncasecmp(line + i, needle, n) == 0)
			return (long)i;
	return -1;
}

/* Scrolls so that the next line holding the search text (after the top line,
 * or from it when `here`) is at the top; wraps around once. */
static void ui_pager_search_next(struct ui *ui, bool here)
{
	if (ui->view == NULL || ui->pager_search == NULL)
		return;
	char *text = ui_pager_text(ui);
	size_t count;
	struct pager_line *lines = ui_pager_wrap(text, COLS, &count);
	bool found = false;
	for (size_t k = here ? 0 : 1; k <= count && !found; k++) {
		size_t i = (ui->pager_top + k) % (count > 0 ? count : 1);
		if (i < count && ui_line_find(text + lines[i].offset, lines[i].len,
					      ui->pager_search) >= 0) {
			if (i <= ui->pager_top && k > 0)
				ui_status(ui, "Search wrapped to top.");
			else
				ui->status[0] = '\0';
			ui->pager_top = i;
			found = true;
		}
	}
	if (!found)
		ui_status(ui, "Not found: %s", ui->pager_search);
	free(lines);
	free(text);
	ui->dirty = true;
}

/* The pager's search text was typed. */
static void ui_pager_search_done(struct ui *ui, const char *text)
{
	if (text == NULL || text[0] == '\0')
		return;
	free(ui->pager_search);
	ui->pager_search = xstrdup(text);
	ui_pager_search_next(ui, false);
}

/* Writes a body line, the search matches in it highlighted. */
static void ui_pager_put_line(struct ui *ui, int y, const char *piece)
{
	long at = ui->pager_search != NULL ? ui_line_find(piece, strlen(piece), ui->pager_search)
					   : -1;
	if (at < 0) {
		ui_put(y, 0, COLS, piece, true);
		return;
	}
	size_t n = strlen(ui->pager_search);
	char *before = xstrndup(piece, (size_t)at);
	char *match = xstrndup(piece + at, n);
	int x = ui_put(y, 0, COLS, before, false);
	attron(A_STANDOUT);
	x += ui_put(y, x, COLS - x, match, false);
	attroff(A_STANDOUT);
	ui_put(y, x, COLS - x, piece + at + (long)n, true);
	free(before);
	free(match);
}

/* Opens the next (+1) or previous (-1) message from the pager. */
static void ui_pager_step(struct ui *ui, int dir)
{
	size_t row = ui->cursor;
	size_t rows = ui_row_count(ui);
	if ((dir > 0 && row + 1 >= rows) || (dir < 0 && row == 0)) {
		ui_status(ui, dir > 0 ? "You are on the last message." :
			  "You are on the first message.");
		return;
	}
	ui->cursor = dir > 0 ? row + 1 : row - 1;
	ui_fetch_message(ui, ui_row_seq(ui, ui->cursor), ACT_OPEN);
}

/* Leaves the pager (to compose after a preview). */
static void ui_pager_leave(struct ui *ui)
{
	if (ui->view_is_preview) {
		msgview_free(&ui->view);
		ui->view_seq = 0;
		ui_enter_screen(ui, SCR_COMPOSE);
		return;
	}
	ui_enter_screen(ui, SCR_INDEX);
}

/* Keys of the pager. */
bool ui_pager_key(struct ui *ui, int key)
{
	size_t page = (size_t)ui_content_rows(ui);
	if (ui->view == NULL) {
		ui_enter_screen(ui, SCR_INDEX);
		return true;
	}
	switch (key) {
	case ' ':
	case KEY_NPAGE:
		ui->pager_top += page > 1 ? page - 1 : 1;
		return true;
	case '-':
	case KEY_PPAGE:
		ui->pager_top = ui->pager_top > page - 1 ? ui->pager_top - (page - 1) : 0;
		return true;
	case '\r':
	case '\n':
	case KEY_ENTER:
	case KEY_DOWN:
		ui->pager_top++;
		return true;
	case KEY_UP:
	case KEY_BACKSPACE:
		if (ui->pager_top > 0)
			ui->pager_top--;
		return true;
	case KEY_HOME:
		ui->pager_top = 0;
		return true;
	case KEY_END: {
		/* The last page: the drawing keeps the top within the text. */
		char *text = ui_pager_text(ui);
		size_t count;
		struct pager_line *lines = ui_pager_wrap(text, COLS, &count);
		ui->pager_top = count > page ? count - page + 1 : 0;
		free(lines);
		free(text);
		return true;
	}
	case '/':
		ui_prompt(ui, "Search for: ", ui->pager_search, false, ui_pager_search_done);
		return true;
	case 'n':
		if (ui->pager_search == NULL)
			ui_status(ui, "No search pattern.");
		else
			ui_pager_search_next(ui, false);
		return true;
	case 'q':
	case 'i':
	case 'x':
		ui_pager_leave(ui);
		return true;
	case 'h':
		ui->all_headers = !ui->all_headers;
		ui->pager_top = 0;
		return true;
	case 'v':
		if (ui->view->attachment_count == 0) {
			ui_status(ui, "This message has no attachments.");
		} else {
			ui->attach_cursor = 0;
			ui_enter_screen(ui, SCR_ATTACH);
		}
		return true;
	}
	if (ui->view_is_preview)
		return false;
	switch (key) {
	case 'j':
		ui_pager_step(ui, 1);
		return true;
	case 'k':
		ui_pager_step(ui, -1);
		return true;
	case 'r':
		ui_fetch_message(ui, ui->view_seq, ACT_REPLY);
		return true;
	case 'g':
		ui_fetch_message(ui, ui->view_seq, ACT_GROUP_REPLY);
		return true;
	case 'f':
		ui_forward_start(ui);
		return true;
	case 'd':
	case 'u':
		ui_set_flag(ui, ui->view_seq, UF_DELETED, key == 'd');
		if (key == 'd')
			ui_enter_screen(ui, SCR_INDEX);
		return true;
	case 'F': {
		struct ui_msg *m = ui_msg_at(ui, ui->view_seq);
		if (m != NULL)
			ui_set_flag(ui, ui->view_seq, UF_FLAGGED, !(m->flags & UF_FLAGGED));
		return true;
	}
	case 'N':
		ui_set_flag(ui, ui->view_seq, UF_SEEN, false);
		ui_enter_screen(ui, SCR_INDEX);
		return true;
	case 's':
	case 'C':
		ui_copy_start(ui, key == 's');
		return true;
	case 'm':
		ui_compose_new(ui);
		return true;
	default:
		return false;
	}
}

/* ---- attachments ---- */

/* Draws the attachment list. */
void ui_attach_draw(struct ui *ui, int rows)
{
	if (ui->view == NULL)
		return;
	for (int r = 0; r < rows; r++) {
		size_t i = (size_t)r;
		if (i >= ui->view->attachment_count) {
			ui_put(1 + r, 0, COLS, "", true);
			continue;
		}
		const struct msgview_attachment *a = &ui->view->attachments[i];
		char line[600];
		snprintf(line, sizeof(line), "%3zu  %-30s  [%s, %zu bytes]", i + 1, a->filename,
			 a->content_type, a->size);
		if (i == ui->attach_cursor)
			attron(A_REVERSE);
		ui_put(1 + r, 0, COLS, line, true);
		if (i == ui->attach_cursor)
			attroff(A_REVERSE);
	}
}

/* Writes the chosen attachment to the typed path. */
static void ui_attach_save_done(struct ui *ui, const char *path)
{
	if (path == NULL || path[0] == '\0' || ui->view == NULL)
		return;
	char *data = NULL;
	size_t len = 0;
	if (msgview_attachment_data(ui->view, ui->attach_cursor, &data, &len) < 0) {
		ui_status(ui, "Cannot decode this attachment.");
		return;
	}
	char *full = path[0] == '~' && path[1] == '/' && getenv("HOME") != NULL ?
		     xasprintf("%s%s", getenv("HOME"), path + 1) : xstrdup(path);
	FILE *f = fopen(full, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len) {
		ui_status(ui, "Cannot write %s: %s", full, strerror(errno));
		if (f != NULL)
			fclose(f);
	} else if (fclose(f) != 0) {
		ui_status(ui, "Cannot write %s: %s", full, strerror(errno));
	} else {
		ui_status(ui, "Saved %zu bytes to %s.", len, full);
	}
	free(full);
	free(data);
}

/* Keys of the attachment list. */
bool ui_attach_key(struct ui *ui, int key)
{
	if (ui->view == NULL) {
		ui_enter_screen(ui, SCR_INDEX);
		return true;
	}
	switch (key) {
	case 'j':
	case KEY_DOWN:
		if (ui->attach_cursor + 1 < ui->view->attachment_count)
			ui->attach_cursor++;
		return true;
	case 'k':
	case KEY_UP:
		if (ui->attach_cursor > 0)
			ui->attach_cursor--;
		return true;
	case 's':
		if (ui->attach_cursor < ui->view->attachment_count)
			ui_prompt(ui, "Save to file: ", ui->view->attachments[ui->attach_cursor].filename,
				  false, ui_attach_save_done);
		return true;
	case 'q':
	case 'x':
	case 'i':
		ui_enter_screen(ui, SCR_PAGER);
		return true;
	default:
		return false;
	}
}
