/* ui.c: the full-screen client's core: the terminal on the libuv loop,
 * drawing, the status line, prompts, the help screen and the transcript pane.
 *
 * The terminal: ncursesw in cbreak/noecho/keypad mode with non-blocking
 * input, read from a uv_poll on stdin; SIGWINCH comes through a uv_signal and
 * resizes the screen. Layout at any size (80x24 included): line 0 is the key
 * help bar, then the screen's content, the transcript pane when it is shown,
 * the status bar (reverse video) and the message/prompt line at the bottom.
 * Drawing happens once per loop iteration, from a uv_prepare handle (just
 * before the loop waits), when something changed (ui->dirty). */
#include <curses.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wchar.h>

#include "buffer.h"
#include "log.h"
#include "mutf7.h"
#include "ui.h"

#define UI_TRANSCRIPT_ROWS_MIN 5
#define UI_PROMPT_MAX 4096
#define UI_SEEN_MAX 1000
#define UI_QUIT_WAIT_MS 1000

static const char *const ui_screen_names[] = {
	[SCR_INDEX] = "index", [SCR_PAGER] = "pager",     [SCR_FOLDERS] = "folders",
	[SCR_HELP] = "help",   [SCR_COMPOSE] = "compose", [SCR_ATTACH] = "attachments",
	[SCR_EDIT] = "editor",
};

/* Changes screen (the transcript notes it, for the classroom view). */
void ui_enter_screen(struct ui *ui, enum ui_screen screen)
{
	if (ui->screen != screen)
		log_debug(0, "mua: screen %s -> %s", ui_screen_names[ui->screen],
			  ui_screen_names[screen]);
	ui->screen = screen;
	ui->dirty = true;
}

/* Sets the message line. */
void ui_status(struct ui *ui, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ui->status, sizeof(ui->status), fmt, ap);
	va_end(ap);
	for (char *p = ui->status; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	ui->dirty = true;
}

/* Writes UTF-8 text in a field of `width` columns (wide and combining aware). */
int ui_put(int y, int x, int width, const char *text, bool pad)
{
	mbstate_t st;
	memset(&st, 0, sizeof(st));
	const char *p = text != NULL ? text : "";
	size_t left = strlen(p);
	int used = 0;
	move(y, x);
	while (left > 0) {
		wchar_t wc;
		size_t n = mbrtowc(&wc, p, left, &st);
		if (n == (size_t)-1 || n == (size_t)-2) {
			memset(&st, 0, sizeof(st));
			wc = L'?';
			n = 1;
		} else if (n == 0) {
			break;
		}
		int w = wcwidth(wc);
		if (wc == L'\t') {
			wc = L' ';
			w = 1;
		}
		if (w < 0) {
			wc = L'?';
			w = 1;
		}
		if (used + w > width)
			break;
		if (w == 0 && used == 0) {
			/* A combining mark with nothing to sit on. */
			p += n;
			left -= n;
			continue;
		}
		addnwstr(&wc, 1);
		used += w;
		p += n;
		left -= n;
	}
	if (pad)
		for (; used < width; used++)
			addch(' ');
	return used;
}

/* The next character of UTF-8 text: its length in bytes, its columns in
 * *cols_r (an invalid byte, a NUL or an unprintable character counts one). */
size_t ui_next_char(const char *text, size_t len, mbstate_t *st, int *cols_r)
{
	wchar_t wc;
	size_t n = mbrtowc(&wc, text, len, st);
	if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
		memset(st, 0, sizeof(*st));
		*cols_r = 1;
		return 1;
	}
	int w = wcwidth(wc);
	*cols_r = w < 0 ? 1 : w;
	return n;
}

/* Columns of the first n bytes of UTF-8 text (invalid bytes count one). */
static int ui_text_width(const char *text, size_t n)
{
	mbstate_t st;
	memset(&st, 0, sizeof(st));
	int cols = 0;
	size_t pos = 0;
	while (pos < n) {
		int w;
		pos += ui_next_char(text + pos, n - pos, &st, &w);
		cols += w;
	}
	return cols;
}

/* Writes text over up to `rows` lines from y, breaking at blanks (a word
 * wider than the screen is cut where it must be); returns the lines used. */
int ui_put_wrapped(int y, int rows, const char *text)
{
	int used = 0;
	const char *p = text;
	while (*p != '\0' && used < rows) {
		while (*p == ' ')
			p++;
		/* Take words while they fit. */
		const char *end = p, *q = p;
		while (*q != '\0') {
			const char *word_end = q + strcspn(q, " ");
			if (ui_text_width(p, (size_t)(word_end - p)) > COLS)
				break;
			end = word_end;
			q = word_end + strspn(word_end, " ");
		}
		if (end == p) {
			/* One word wider than the screen: as many characters as fit. */
			size_t n = 0;
			while (p[n] != '\0' && p[n] != ' ') {
				size_t k = 1;
				while (((unsigned char)p[n + k] & 0xc0) == 0x80)
					k++;
				if (ui_text_width(p, n + k) > COLS)
					break;
				n += k;
			}
			end = p + (n > 0 ? n : 1);
		}
		char *line = xstrndup(p, (size_t)(end - p));
		ui_put(y + used, 0, COLS, line, true);
		free(line);
		used++;
		p = end;
	}
	return used;
}

/* Remembers an address for completion. */
void ui_remember_address(struct ui *ui, const char *addr)
{
	if (addr == NULL || strchr(addr, '@') == NULL || strlen(addr) > 320)
		return;
	for (size_t i = 0; i < ui->seen_count; i++)
		if (strcasecmp(ui->seen[i], addr) == 0)
			return;
	if (ui->seen_count >= UI_SEEN_MAX)
		return;
	ui->seen = xrealloc(ui->seen, (ui->seen_count + 1) * sizeof(*ui->seen));
	ui->seen[ui->seen_count++] = xstrdup(addr);
}

/* Rows of the transcript pane (0 when hidden). */
static int ui_transcript_rows(const struct ui *ui)
{
	if (!ui->show_transcript)
		return 0;
	int rows = (LINES - 3) / 3;
	return rows < UI_TRANSCRIPT_ROWS_MIN ? UI_TRANSCRIPT_ROWS_MIN : rows;
}

/* Rows between the help bar and the status bar, minus the transcript pane. */
int ui_content_rows(const struct ui *ui)
{
	int rows = LINES - 3 - ui_transcript_rows(ui);
	return rows < 1 ? 1 : rows;
}

/* Starts a one-line prompt on the bottom line. */
void ui_prompt(struct ui *ui, const char *label, const char *initial, bool addresses,
	       ui_prompt_cb *done)
{
	ui->prompt_active = true;
	snprintf(ui->prompt_label, sizeof(ui->prompt_label), "%s", label);
	buf_reset(&ui->prompt_text);
	if (initial != NULL)
		buf_append_str(&ui->prompt_text, initial);
	ui->prompt_done = done;
	ui->prompt_addresses = addresses;
	ui->complete_index = 0;
	ui->dirty = true;
}

/* Asks a yes/no question on the bottom line. */
void ui_question(struct ui *ui, const char *label, ui_question_cb *done)
{
	ui->question_active = true;
	snprintf(ui->prompt_label, sizeof(ui->prompt_label), "%s ([yes]/no): ", label);
	ui->question_done = done;
	ui->dirty = true;
}

/* Completes the last address of the prompt from the addresses seen. */
static void ui_prompt_complete(struct ui *ui)
{
	const char *text = buf_cstr(&ui->prompt_text);
	const char *start = strrchr(text, ',');
	start = start != NULL ? start + 1 : text;
	while (*start == ' ')
		start++;
	size_t plen = strlen(start);
	size_t keep = (size_t)(start - text);
	for (size_t k = 0; k < ui->seen_count; k++) {
		size_t i = (ui->complete_index + k) % ui->seen_count;
		if (strncasecmp(ui->seen[i], start, plen) == 0 && strcasecmp(ui->seen[i], start) != 0) {
			char *head = xstrndup(text, keep);
			buf_reset(&ui->prompt_text);
			buf_append_str(&ui->prompt_text, head);
			buf_append_str(&ui->prompt_text, ui->seen[i]);
			free(head);
			ui->complete_index = i + 1;
			return;
		}
	}
	beep();
}

/* Removes the last UTF-8 character of a buffer. */
void ui_buf_drop_last_char(buf_t *b)
{
	while (b->len > 0) {
		unsigned char c = (unsigned char)b->data[--b->len];
		if ((c & 0xc0) != 0x80)
			break;
	}
	if (b->data != NULL)
		b->data[b->len] = '\0';
}

/* Appends a wide character as UTF-8. */
void ui_buf_append_wchar(buf_t *b, wint_t wc)
{
	char mb[MB_LEN_MAX];
	mbstate_t st;
	memset(&st, 0, sizeof(st));
	size_t n = wcrtomb(mb, (wchar_t)wc, &st);
	if (n != (size_t)-1)
		buf_append(b, mb, n);
}

/* A key for the prompt. */
static void ui_prompt_key(struct ui *ui, wint_t key, bool is_key_code)
{
	if (!is_key_code && (key == '\n' || key == '\r')) {
		ui->prompt_active = false;
		char *text = buf_steal(&ui->prompt_text);
		ui->status[0] = '\0';
		ui->prompt_done(ui, text);
		free(text);
	} else if (!is_key_code && (key == 27 || key == 7)) { /* Esc, ^G */
		ui->prompt_active = false;
		ui_status(ui, "Cancelled.");
		ui->prompt_done(ui, NULL);
	} else if ((is_key_code && key == KEY_BACKSPACE) || (!is_key_code &&
		   (key == 127 || key == 8))) {
		ui_buf_drop_last_char(&ui->prompt_text);
	} else if (!is_key_code && key == 21) { /* ^U */
		buf_reset(&ui->prompt_text);
	} else if (!is_key_code && key == '\t' && ui->prompt_addresses) {
		ui_prompt_complete(ui);
	} else if (!is_key_code && key >= 0x20 && ui->prompt_text.len < UI_PROMPT_MAX) {
		ui_buf_append_wchar(&ui->prompt_text, key);
	}
	ui->dirty = true;
}

/* Runs the editor on path with the screen suspended. */
int ui_run_editor(struct ui *ui, const char *path)
{
	const char *editor = getenv("VISUAL");
	if (editor == NULL || editor[0] == '\0')
		editor = getenv("EDITOR");
	if (editor == NULL || editor[0] == '\0')
		return -1;
	char *quoted = xasprintf("%s '%s'", editor, path);
	def_prog_mode();
	endwin();
	int status = system(quoted);
	free(quoted);
	reset_prog_mode();
	clearok(stdscr, TRUE);
	refresh();
	ui->dirty = true;
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		ui_status(ui, "The editor failed (%s).", editor);
		return -2;
	}
	return 0;
}

/* ---- the help screen ---- */

static const char *const ui_help_lines[] = {
	"Index",
	"  j / Down    next message            k / Up      previous message",
	"  PgDn Space  next page               PgUp -      previous page",
	"  Home =      first message           End *       last message",
	"  Enter       open the message        m           compose a new message",
	"  r           reply                   g           group reply (reply to all)",
	"  f           forward (inline or as an attachment)",
	"  d / u       delete / undelete       $           expunge deleted messages",
	"  s / C       move / copy to a folder F           flag / unflag",
	"  N           mark read / unread      o           sort: threads/date/arrival",
	"  /  n        search, next match      l           limit (empty or ~A: all)",
	"  c / y       folders (Enter opens)   R           resume a postponed draft",
	"  G           check for new mail now  A           next account",
	"Pager",
	"  Space PgDn  next page               - PgUp      previous page",
	"  Enter Down  next line               Up          previous line",
	"  Home / End  top / end of message    j / k       next / previous message",
	"  /  n        search the text, next   h           all headers on/off",
	"  v           attachments (s saves)   q / i       back to the index",
	"  r g f d u F N s C m                 as in the index",
	"Compose",
	"  y  send          t c b  To/Cc/Bcc   s  subject    e  edit the body",
	"  a  attach a file D  drop last att.  v  preview    P  postpone   q  abort",
	"Everywhere",
	"  T  transcript pane on/off           ^L redraw     ?  this help",
	"  q  quit (from the index)",
	"Prompts: Tab completes addresses, ^U clears, Esc cancels.",
	"Patterns: ~f from  ~s subject  ~b body  ~t to  ~N new  ~O old  ~F flagged",
	"          ~D deleted  ~A all; terms are ANDed.",
};

#define UI_HELP_LINES (sizeof(ui_help_lines) / sizeof(ui_help_lines[0]))

/* Draws the help screen from ui->help_top. */
static void ui_help_draw(struct ui *ui, int rows)
{
	size_t n = UI_HELP_LINES;
	if (ui->help_top + (size_t)rows > n)
		ui->help_top = n > (size_t)rows ? n - (size_t)rows : 0;
	for (int r = 0; r < rows; r++) {
		size_t i = ui->help_top + (size_t)r;
		bool title = i < n && ui_help_lines[i][0] != ' ' && strchr(ui_help_lines[i], ':') == NULL;
		if (title)
			attron(A_BOLD);
		ui_put(1 + r, 0, COLS, i < n ? ui_help_lines[i] : "", true);
		if (title)
			attroff(A_BOLD);
	}
}

/* Keys of the help screen: scrolling, anything else goes back. */
static void ui_help_key(struct ui *ui, int key)
{
	size_t page = (size_t)ui_content_rows(ui);
	switch (key) {
	case 'j':
	case KEY_DOWN:
		ui->help_top++;
		break;
	case 'k':
	case KEY_UP:
		if (ui->help_top > 0)
			ui->help_top--;
		break;
	case ' ':
	case KEY_NPAGE:
		ui->help_top += page;
		break;
	case '-':
	case KEY_PPAGE:
		ui->help_top = ui->help_top > page ? ui->help_top - page : 0;
		break;
	case KEY_HOME:
		ui->help_top = 0;
		break;
	case KEY_END:
		ui->help_top = UI_HELP_LINES;
		break;
	default:
		ui_enter_screen(ui, ui->return_screen);
		break;
	}
	ui->dirty = true;
}

/* ---- the frame ---- */

/* The key hints at the top for each screen. */
static const char *ui_help_bar(const struct ui *ui)
{
	switch (ui->screen) {
	case SCR_PAGER:
		return "i:Exit  -:PrevPg  <Space>:NextPg  v:View Attachm.  d:Del  r:Reply  g:Group  "
		       "f:Fwd  /:Search  ?:Help";
	case SCR_FOLDERS:
		return "q:Back  Enter:Open  j/k:Move  ?:Help";
	case SCR_COMPOSE:
		return "y:Send  q:Abort  t:To  c:CC  s:Subj  a:Attach file  e:Edit  v:Preview  "
		       "P:Postpone  ?:Help";
	case SCR_ATTACH:
		return "q:Exit  s:Save  j/k:Move  ?:Help";
	case SCR_EDIT:
		return "Type the message.  ^X or ^D: done   Esc: cancel";
	case SCR_HELP:
		return "j/k/Space/-: scroll   any other key: back";
	default:
		return "q:Quit  d:Del  u:Undel  s:Save  m:Mail  r:Reply  g:Group  ?:Help";
	}
}

static const char *ui_conn_names[] = {
	[IMAPC_DISCONNECTED] = "offline", [IMAPC_CONNECTING] = "connecting",
	[IMAPC_TLS] = "TLS",              [IMAPC_GREETING] = "greeting",
	[IMAPC_STARTTLS] = "STARTTLS",    [IMAPC_AUTH] = "login",
	[IMAPC_READY] = "online",         [IMAPC_LOGOUT] = "logout",
};

/* Draws the status bar (reverse video). */
static void ui_status_bar(struct ui *ui, int y)
{
	char bar[512];
	uint32_t unseen = 0, deleted = 0;
	for (uint32_t i = 0; i < ui->exists; i++)
		if (ui->msgs[i] != NULL && ui->msgs[i]->have) {
			unseen += !(ui->msgs[i]->flags & UF_SEEN);
			deleted += (ui->msgs[i]->flags & UF_DELETED) != 0;
		}
	char *folder = ui->folder != NULL ? mutf7_display(ui->folder) : xstrdup("-");
	if (ui->screen == SCR_PAGER && ui->view != NULL)
		snprintf(bar, sizeof(bar), "-*- %s: %s  message %u/%u %s-- %s",
			 ui->account->address, folder, ui->view_seq,
			 ui->exists, ui->view_is_preview ? "(preview) " : "",
			 ui_conn_names[ui->conn_state]);
	else
		snprintf(bar, sizeof(bar), "-*- %s: %s [Msgs:%u New:%u Del:%u]%s%s (%s) -- %s",
			 ui->account->address, folder, ui->exists,
			 unseen, deleted, ui->limited ? " Lim:" : "",
			 ui->limited ? ui->limit_pattern : "", ui_sort_label(ui),
			 ui_conn_names[ui->conn_state]);
	free(folder);
	attron(A_REVERSE);
	ui_put(y, 0, COLS, bar, true);
	attroff(A_REVERSE);
}

/* Draws the transcript pane: the newest lines at its bottom. */
static void ui_transcript_draw(struct ui *ui, int y, int rows)
{
	attron(A_REVERSE);
	ui_put(y, 0, COLS, "-- transcript (T hides; secrets masked) --", true);
	attroff(A_REVERSE);
	size_t count = mua_transcript_count();
	size_t shown = (size_t)(rows - 1);
	size_t end = count > ui->transcript_scroll ? count - ui->transcript_scroll : 0;
	size_t start = end > shown ? end - shown : 0;
	for (size_t r = 0; r < shown; r++) {
		size_t i = start + r;
		const char *line = i < end ? mua_transcript_line(i) : "";
		bool client = strstr(line, " C: ") != NULL && strstr(line, " C: ") < line + 8;
		if (client)
			attron(COLOR_PAIR(3));
		ui_put(y + 1 + (int)r, 0, COLS, line, true);
		if (client)
			attroff(COLOR_PAIR(3));
	}
}

/* Draws everything. */
static void ui_draw(struct ui *ui)
{
	erase();
	attron(A_REVERSE);
	ui_put(0, 0, COLS, ui_help_bar(ui), true);
	attroff(A_REVERSE);
	int rows = ui_content_rows(ui);
	switch (ui->screen) {
	case SCR_INDEX:
		ui_index_draw(ui, rows);
		break;
	case SCR_PAGER:
		ui_pager_draw(ui, rows);
		break;
	case SCR_FOLDERS:
		ui_folders_draw(ui, rows);
		break;
	case SCR_HELP:
		ui_help_draw(ui, rows);
		break;
	case SCR_COMPOSE:
		ui_compose_draw(ui, rows);
		break;
	case SCR_ATTACH:
		ui_attach_draw(ui, rows);
		break;
	case SCR_EDIT:
		ui_edit_draw(ui, rows);
		break;
	}
	int trows = ui_transcript_rows(ui);
	if (trows > 0)
		ui_transcript_draw(ui, 1 + rows, trows);
	ui_status_bar(ui, LINES - 2);
	int cursor_x = 0;
	if (ui->prompt_active) {
		int used = ui_put(LINES - 1, 0, COLS, ui->prompt_label, false);
		const char *text = buf_cstr(&ui->prompt_text);
		/* Show the end of a long answer. */
		size_t len = strlen(text);
		int room = COLS - used - 1;
		const char *shown = text;
		while ((int)(len - (size_t)(shown - text)) > room * 4 && *shown != '\0')
			shown++;
		cursor_x = used + ui_put(LINES - 1, used, room > 0 ? room : 0, shown, false);
		curs_set(1);
	} else if (ui->question_active) {
		cursor_x = ui_put(LINES - 1, 0, COLS - 1, ui->prompt_label, false);
		curs_set(1);
	} else {
		ui_put(LINES - 1, 0, COLS, ui->status, true);
		curs_set(0);
	}
	if (ui->prompt_active || ui->question_active)
		move(LINES - 1, cursor_x);
	refresh();
}

/* Draws when something changed: called before the loop waits (uv_prepare),
 * so that changes made anywhere, close callbacks included, reach the screen. */
static void ui_redraw_if_dirty(struct ui *ui)
{
	/* The transcript pane follows the conversation as it happens. */
	if (ui->show_transcript && mua_transcript_generation() != ui->transcript_generation) {
		ui->transcript_generation = mua_transcript_generation();
		ui->dirty = true;
	}
	if (ui->dirty && !ui->quit) {
		ui->dirty = false;
		ui_draw(ui);
	}
}

static void ui_prepare_cb(uv_prepare_t *h)
{
	ui_redraw_if_dirty(h->data);
}

/* ---- keys ---- */

/* Keys every screen shares (when the screen did not take the key). */
static void ui_global_key(struct ui *ui, int key)
{
	switch (key) {
	case 'T':
		ui->show_transcript = !ui->show_transcript;
		ui->transcript_scroll = 0;
		break;
	case 12: /* ^L */
		clearok(stdscr, TRUE);
		break;
	case '?':
		if (ui->screen != SCR_HELP) {
			ui->return_screen = ui->screen;
			ui->help_top = 0;
			ui_enter_screen(ui, SCR_HELP);
		}
		break;
	default:
		ui_status(ui, "Key is not bound.  Press '?' for help.");
		break;
	}
	ui->dirty = true;
}

/* Sends one key to the active prompt, question or screen. */
static void ui_key(struct ui *ui, wint_t key, bool is_key_code)
{
	if (is_key_code && key == KEY_RESIZE) {
		ui->dirty = true;
		return;
	}
	if (ui->prompt_active) {
		ui_prompt_key(ui, key, is_key_code);
		return;
	}
	if (ui->question_active) {
		if (is_key_code)
			return;
		bool yes = key == 'y' || key == 'Y' || key == '\n' || key == '\r';
		bool no = key == 'n' || key == 'N' || key == 27 || key == 7;
		if (yes || no) {
			ui->question_active = false;
			ui->status[0] = '\0';
			ui->question_done(ui, yes);
			ui->dirty = true;
		}
		return;
	}
	if (ui->screen == SCR_EDIT) {
		ui_edit_key(ui, key, is_key_code);
		ui->dirty = true;
		return;
	}
	int k = (int)key;
	if (!is_key_code && k > 0x7f)
		return; /* wide characters mean nothing outside prompts */
	if (ui->screen == SCR_HELP) {
		ui_help_key(ui, k);
		return;
	}
	bool taken = false;
	switch (ui->screen) {
	case SCR_INDEX:
		taken = ui_index_key(ui, k);
		break;
	case SCR_PAGER:
		taken = ui_pager_key(ui, k);
		break;
	case SCR_FOLDERS:
		taken = ui_folders_key(ui, k);
		break;
	case SCR_COMPOSE:
		taken = ui_compose_key(ui, k);
		break;
	case SCR_ATTACH:
		taken = ui_attach_key(ui, k);
		break;
	default:
		break;
	}
	if (!taken)
		ui_global_key(ui, k);
	ui->dirty = true;
}

/* stdin is readable: take every key waiting. */
static void ui_input_cb(uv_poll_t *h, int status, int events)
{
	struct ui *ui = h->data;
	for (int i = 0; i < 4096 && !ui->quit; i++) {
		wint_t wc;
		int r = get_wch(&wc);
		if (r == ERR)
			break;
		ui_key(ui, wc, r == KEY_CODE_YES);
	}
}

/* The terminal changed size. */
static void ui_winch_cb(uv_signal_t *h, int signum)
{
	struct ui *ui = h->data;
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
		resizeterm(ws.ws_row, ws.ws_col);
	clearok(stdscr, TRUE);
	ui->dirty = true;
}

/* ---- connection events ---- */

/* The IMAP connection changed state: tell the user, re-open the folder. */
static void ui_on_state(void *arg, enum imapc_state state, const char *msg)
{
	struct ui *ui = arg;
	if (ui_is_pop3(ui) && ui_pop3_on_state(ui, state, msg)) {
		ui->dirty = true;
		return;
	}
	ui->conn_state = state;
	switch (state) {
	case IMAPC_CONNECTING:
		ui_status(ui, "Connecting to %s:%d...", ui->account->read_host,
			  ui->account->read_port);
		break;
	case IMAPC_READY:
		ui->conn_error[0] = '\0';
		ui_status(ui, "Connected to %s:%d as %s.", ui->account->read_host,
			  ui->account->read_port, ui->account->login);
		ui_on_ready(ui);
		break;
	case IMAPC_DISCONNECTED:
		ui->selected = false;
		ui->selecting = false;
		ui->thread_fetching = false;
		ui->fetch_seq = 0;
		for (uint32_t i = 0; i < ui->exists; i++)
			if (ui->msgs[i] != NULL)
				ui->msgs[i]->pending = false;
		if (msg != NULL) {
			ui_status(ui, "%s", msg);
			snprintf(ui->conn_error, sizeof(ui->conn_error), "%s", msg);
		}
		break;
	default:
		break;
	}
	ui->dirty = true;
}

static const struct imapc_events ui_events = {
	.on_state = ui_on_state,
	.on_exists = ui_on_exists,
	.on_expunge = ui_on_expunge,
	.on_fetch = ui_on_fetch,
};

/* Makes the reading client for ui->account and connects. */
static void ui_start_client(struct ui *ui)
{
	if (ui->account->read_pop3) {
		ui_pop3_start(ui, &ui_events);
		return;
	}
	ui->cl = imapc_new(ui->loop, ui->account, &ui_events, ui);
	imapc_set_reconnect(ui->cl, true);
	imapc_set_idle(ui->cl, true);
	imapc_connect(ui->cl);
}

/* Switches to another account (A). */
static void ui_switch_account(struct ui *ui, struct mua_account *a)
{
	char *err = NULL;
	if (mua_account_password(a, false, &err) < 0) {
		ui_status(ui, "%s", err);
		free(err);
		return;
	}
	imapc_free(&ui->cl);
	ui_pop3_stop(ui);
	ui_index_free(ui);
	ui->selected = ui->selecting = false;
	ui->fetch_seq = 0;
	free(ui->folder);
	ui->folder = xstrdup("INBOX");
	ui->account = a;
	ui->conn_state = IMAPC_DISCONNECTED;
	ui_start_client(ui);
	ui_enter_screen(ui, SCR_INDEX);
}

/* Cycles to the next account. */
void ui_next_account(struct ui *ui)
{
	if (ui->accounts->count < 2) {
		ui_status(ui, "Only one account is configured.");
		return;
	}
	size_t i = (size_t)(ui->account - ui->accounts->items);
	ui_switch_account(ui, &ui->accounts->items[(i + 1) % ui->accounts->count]);
}

/* The polite LOGOUT had its chance: drop the connection. */
static void ui_quit_timer_cb(uv_timer_t *t)
{
	struct ui *ui = t->data;
	imapc_free(&ui->cl);
	ui_pop3_stop(ui);
	uv_close((uv_handle_t *)t, NULL);
}

/* Leaves the screen loop (after a LOGOUT, given at most UI_QUIT_WAIT_MS). */
void ui_quit(struct ui *ui)
{
	ui->quit = true;
	uv_poll_stop(&ui->input);
	uv_signal_stop(&ui->winch);
	uv_prepare_stop(&ui->redraw);
	bool imap_up = ui->cl != NULL && imapc_get_state(ui->cl) == IMAPC_READY;
	bool pop3_up = ui->pc != NULL && pop3c_get_state(ui->pc) == IMAPC_READY;
	if (imap_up || pop3_up) {
		if (imap_up)
			imapc_logout(ui->cl);
		if (pop3_up) {
			/* QUIT without DELE: messages marked deleted stay until $. */
			ui_pop3_poll_stop(ui);
			pop3c_set_reconnect(ui->pc, false);
			pop3c_quit(ui->pc);
		}
		uv_timer_init(ui->loop, &ui->quit_timer);
		ui->quit_timer.data = ui;
		uv_timer_start(&ui->quit_timer, ui_quit_timer_cb, UI_QUIT_WAIT_MS, 0);
	} else {
		imapc_free(&ui->cl);
		ui_pop3_stop(ui);
	}
}

/* Teaches ncurses the Home/End/PageUp/PageDown sequences that terminals send
 * whatever TERM says: tmux and screen send "\e[1~"/"\e[4~" for Home/End, xterm
 * "\eOH"/"\e[H", rxvt "\e[7~"; without these, Home and End do nothing under tmux
 * with TERM=xterm-256color. */
static void ui_define_keys(void)
{
	static const struct {
		const char *seq;
		int key;
	} keys[] = {
		{"\033[1~", KEY_HOME}, {"\033[7~", KEY_HOME}, {"\033[H", KEY_HOME},
		{"\033OH", KEY_HOME},  {"\033[4~", KEY_END},  {"\033[8~", KEY_END},
		{"\033[F", KEY_END},   {"\033OF", KEY_END},   {"\033[5~", KEY_PPAGE},
		{"\033[6~", KEY_NPAGE},
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (key_defined(keys[i].seq) == 0)
			define_key(keys[i].seq, keys[i].key);
}

/* Runs the screen until the user quits. */
int mua_ui_run(uv_loop_t *loop, struct mua_accounts *accounts, struct mua_account *first)
{
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "mua: the screen needs a terminal (use send, list or read in "
			"scripts)\n");
		return EX_USAGE;
	}
	char *err = NULL;
	/* Ask before the screen starts, when a prompt is needed. */
	if (mua_account_password(first, true, &err) < 0) {
		fprintf(stderr, "mua: %s\n", err);
		free(err);
		return EX_CONFIG;
	}
	struct ui *ui = xcalloc(1, sizeof(*ui));
	ui->loop = loop;
	ui->accounts = accounts;
	ui->account = first;
	ui->sort = MUA_SORT_THREADS;
	initscr();
	cbreak();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	ui_define_keys();
	nodelay(stdscr, TRUE);
	set_escdelay(50);
	if (has_colors()) {
		start_color();
		use_default_colors();
		init_pair(1, COLOR_CYAN, -1);    /* quoted text */
		init_pair(2, COLOR_YELLOW, -1);  /* attachments, new mail */
		init_pair(3, COLOR_GREEN, -1);   /* client lines in the transcript */
		init_pair(4, COLOR_MAGENTA, -1); /* header names */
	}
	uv_poll_init(loop, &ui->input, STDIN_FILENO);
	ui->input.data = ui;
	uv_poll_start(&ui->input, UV_READABLE, ui_input_cb);
	uv_signal_init(loop, &ui->winch);
	ui->winch.data = ui;
	uv_signal_start(&ui->winch, ui_winch_cb, SIGWINCH);
	uv_prepare_init(loop, &ui->redraw);
	ui->redraw.data = ui;
	uv_prepare_start(&ui->redraw, ui_prepare_cb);
	ui->folder = xstrdup("INBOX");
	ui->dirty = true;
	ui_draw(ui);
	ui_start_client(ui);
	uv_run(loop, UV_RUN_DEFAULT);
	endwin();
	uv_close((uv_handle_t *)&ui->input, NULL);
	uv_close((uv_handle_t *)&ui->winch, NULL);
	uv_close((uv_handle_t *)&ui->redraw, NULL);
	imapc_free(&ui->cl);
	ui_pop3_stop(ui);
	uv_run(loop, UV_RUN_DEFAULT);
	ui_index_free(ui);
	ui_draft_free(&ui->draft);
	msgview_free(&ui->view);
	free(ui->pager_search);
	buf_free(&ui->prompt_text);
	buf_free(&ui->edit_text);
	for (size_t i = 0; i < ui->seen_count; i++)
		free(ui->seen[i]);
	free(ui->seen);
	free(ui->folder);
	free(ui);
	return EX_OK;
}
