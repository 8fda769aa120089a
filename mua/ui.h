/* ui.h: the state shared by the mua's screens (ui.c, ui_index.c, ui_pager.c,
 * ui_compose.c).
 *
 * One `struct ui` lives for the whole session. `screen` says which screen
 * keys go to (one variable, changed by ui_enter_screen, which logs). A modal
 * prompt or question, when active, takes the keys first. Drawing happens in
 * one place, after each loop iteration when `dirty` is set, so a burst of
 * FETCH responses redraws once. The message cache holds one slot per
 * sequence number; slots are filled only for rows that are shown (and thread
 * headers in the background), so a folder of 100,000 messages costs 100,000
 * pointers, not 100,000 envelopes. */
#ifndef MAILSTACK_MUA_UI_H
#define MAILSTACK_MUA_UI_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <wchar.h>

#include "buffer.h"
#include "compose.h"
#include "mua.h"

enum ui_screen { SCR_INDEX, SCR_PAGER, SCR_FOLDERS, SCR_HELP, SCR_COMPOSE, SCR_ATTACH, SCR_EDIT };

enum ui_flag { UF_SEEN = 1, UF_ANSWERED = 2, UF_FLAGGED = 4, UF_DELETED = 8, UF_DRAFT = 16 };

/* What to do once a message has been fetched whole. */
enum ui_action { ACT_NONE, ACT_OPEN, ACT_REPLY, ACT_GROUP_REPLY, ACT_FORWARD, ACT_FORWARD_ATTACH,
		 ACT_RESUME };

struct ui_msg {
	bool have;        /* envelope fetched */
	bool pending;     /* a FETCH for it is on its way */
	uint32_t uid;
	unsigned flags;
	int64_t time;
	uint32_t size;
	bool attachment;
	char *from;
	char *subject;
	/* thread headers (BODY.PEEK[HEADER.FIELDS ...]) */
	bool have_thread;
	char *message_id, *in_reply_to, *references, *thread_subject;
	int64_t thread_time;   /* the Date header; 0 = missing or garbled */
	int64_t internal_time; /* INTERNALDATE; 0 = unknown */
};

struct ui_folder {
	char *name;       /* as on the wire (modified UTF-7) */
	char *display;    /* UTF-8, for the screen */
	char *special;    /* "\\Sent" ... or NULL */
	uint32_t total, unseen;
};

struct ui_draft {
	char *to, *cc, *bcc, *subject, *body;
	struct compose_attachment *atts;
	size_t att_count;
	char *in_reply_to, *references;
	uint32_t reply_uid;   /* mark \Answered after sending; 0 = none */
	char *reply_folder;
	bool sending;
};

/* The POP3 session's phase (ui_pop3.c). */
enum ui_pop3_phase { POP3_PHASE_IDLE, POP3_PHASE_REFRESH, POP3_PHASE_CYCLE };

struct ui;
typedef void ui_prompt_cb(struct ui *ui, const char *text); /* NULL text = cancelled */
typedef void ui_question_cb(struct ui *ui, bool yes);

struct ui {
	uv_loop_t *loop;
	struct mua_accounts *accounts;
	struct mua_account *account;
	imapc *cl;            /* IMAP accounts */
	pop3c *pc;            /* POP3 accounts (then cl is NULL) */
	struct pop3box *box;
	uint32_t box_rows;    /* entries copied into msgs */
	enum ui_pop3_phase pop3_phase;
	bool pop3_loaded;
	size_t pop3_deleted;
	uv_timer_t poll_timer;
	bool poll_timer_live;
	enum imapc_state conn_state;
	uv_poll_t input;
	uv_signal_t winch;
	uv_prepare_t redraw;
	uv_timer_t quit_timer;
	bool dirty, quit;
	enum ui_screen screen, return_screen;
	char status[512];
	char conn_error[512];  /* why the connection is down (shown whole on an empty index) */
	bool show_transcript;
	size_t help_top;
	size_t transcript_scroll;
	uint64_t transcript_generation; /* of the lines last drawn */
	/* folder and index */
	char *folder;
	uint32_t uidvalidity;  /* of the folder as cached; 0 = unknown */
	struct ui_msg **stash; /* the cache kept over a reconnect, sorted by UID */
	size_t stash_count;
	uint32_t stash_uidvalidity;
	bool selecting, selected;
	uint32_t exists;
	struct ui_msg **msgs;
	size_t msgs_cap;
	size_t cursor, top;
	enum mua_sort sort;    /* threads and date need every message's thread headers */
	size_t *thread_rows;   /* row -> index (seq - 1), in the order of sort */
	unsigned *thread_depth;
	size_t thread_count;   /* rows in thread_rows (== exists when valid) */
	uint32_t thread_next;  /* next sequence to fetch thread headers for */
	bool thread_fetching;
	uint32_t *limit;       /* the sequence numbers shown under a limit */
	size_t limit_count;
	bool limited;
	char *limit_pattern;
	char *search_pattern;
	uint32_t *search_hits;
	size_t search_hit_count;
	/* folders */
	struct ui_folder *folders;
	size_t folder_count, folder_cursor;
	char *sent_folder, *drafts_folder, *trash_folder;
	/* pager */
	struct msgview *view;
	uint32_t view_seq;
	bool view_is_preview;
	bool all_headers;
	size_t pager_top;
	char *pager_search;     /* the text / looks for in the pager, or NULL */
	size_t attach_cursor;
	uint32_t fetch_seq;     /* the message whose BODY[] is awaited */
	enum ui_action fetch_action;
	char *fetch_raw;
	size_t fetch_len;
	/* compose */
	struct ui_draft draft;
	bool draft_active;
	size_t compose_cursor;
	buf_t edit_text;        /* the built-in editor's text */
	/* prompt / question */
	bool prompt_active;
	char prompt_label[128];
	buf_t prompt_text;
	ui_prompt_cb *prompt_done;
	bool prompt_addresses;  /* Tab completes addresses */
	size_t complete_index;
	bool question_active;
	ui_question_cb *question_done;
	/* addresses seen, for completion */
	char **seen;
	size_t seen_count;
};

/* ---- ui.c ---- */
/* The next character of UTF-8 text: its length in bytes, its columns in
 * *cols_r (an invalid byte, a NUL or an unprintable character counts one). */
size_t ui_next_char(const char *text, size_t len, mbstate_t *st, int *cols_r);
/* Removes the last UTF-8 character of a buffer (typed text). */
void ui_buf_drop_last_char(buf_t *b);
/* Appends a wide character as UTF-8 (an invalid one is skipped). */
void ui_buf_append_wchar(buf_t *b, wint_t wc);
void ui_enter_screen(struct ui *ui, enum ui_screen screen);
void ui_status(struct ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ui_prompt(struct ui *ui, const char *label, const char *initial, bool addresses,
	       ui_prompt_cb *done);
void ui_question(struct ui *ui, const char *label, ui_question_cb *done);
/* Writes UTF-8 text at (y, x) in at most `width` columns, padding with blanks
 * when pad; returns the columns used. */
int ui_put(int y, int x, int width, const char *text, bool pad);
/* Writes text wrapped at blanks over at most rows lines from y; returns lines used. */
int ui_put_wrapped(int y, int rows, const char *text);
void ui_remember_address(struct ui *ui, const char *addr);
/* Rows of the screen left for content (without bars and the transcript pane). */
int ui_content_rows(const struct ui *ui);
/* Runs $EDITOR on a file (the screen is suspended); 0 or -1. */
int ui_run_editor(struct ui *ui, const char *path);
void ui_next_account(struct ui *ui);
void ui_quit(struct ui *ui);

/* ---- ui_index.c ---- */
void ui_index_draw(struct ui *ui, int rows);
bool ui_index_key(struct ui *ui, int key);
void ui_folders_draw(struct ui *ui, int rows);
bool ui_folders_key(struct ui *ui, int key);
void ui_select_folder(struct ui *ui, const char *folder);
void ui_list_folders(struct ui *ui, bool show);
void ui_on_ready(struct ui *ui);
void ui_on_exists(void *arg, uint32_t count);
void ui_on_expunge(void *arg, uint32_t seq);
void ui_on_fetch(void *arg, uint32_t seq, const struct imap_arg *list);
size_t ui_row_count(const struct ui *ui);
/* The sequence number shown on a row (0 = none). */
uint32_t ui_row_seq(const struct ui *ui, size_t row);
struct ui_msg *ui_msg_at(struct ui *ui, uint32_t seq);
/* Fetches a message whole, then performs action. */
void ui_fetch_message(struct ui *ui, uint32_t seq, enum ui_action action);
void ui_set_flag(struct ui *ui, uint32_t seq, unsigned flag, bool on);
void ui_index_free(struct ui *ui);
/* Empties the message cache, threads and limits (a new folder or maildrop). */
void ui_index_reset(struct ui *ui);
/* Frees the cache kept over a reconnect. */
void ui_stash_free(struct ui *ui);
/* Orders the rows (threads or date, as ui->sort says) from the cached header fields. */
void ui_thread_compute(struct ui *ui);
/* The order for the status line: "threads", "date", "arrival", with
 * ", sorting…" while the rows still wait for the headers they sort by. */
const char *ui_sort_label(const struct ui *ui);
/* Asks for a folder and moves (s) or copies (C) the current message there. */
void ui_copy_start(struct ui *ui, bool move);
/* Asks inline or attachment, then forwards the current message. */
void ui_forward_start(struct ui *ui);

/* ---- ui_pager.c ---- */
void ui_pager_draw(struct ui *ui, int rows);
bool ui_pager_key(struct ui *ui, int key);
void ui_attach_draw(struct ui *ui, int rows);
bool ui_attach_key(struct ui *ui, int key);
void ui_pager_show(struct ui *ui, struct msgview *view, uint32_t seq, bool preview);

/* ---- ui_pop3.c ---- */
bool ui_is_pop3(const struct ui *ui);
void ui_pop3_start(struct ui *ui, const struct imapc_events *ev);
void ui_pop3_stop(struct ui *ui);
void ui_pop3_on_ready(struct ui *ui);
/* Returns true when it handled the state change itself (its own QUIT cycle). */
bool ui_pop3_on_state(struct ui *ui, enum imapc_state state, const char *msg);
void ui_pop3_poll(struct ui *ui, bool asked);
void ui_pop3_poll_stop(struct ui *ui);
void ui_pop3_set_flag(struct ui *ui, uint32_t seq, unsigned flag, bool on);
void ui_pop3_fetch_message(struct ui *ui, uint32_t seq, enum ui_action action);
void ui_pop3_expunge(struct ui *ui);
int ui_pop3_search(struct ui *ui, const char *pattern, char **err_r);

/* ---- ui_compose.c ---- */
void ui_compose_new(struct ui *ui);
void ui_compose_from_view(struct ui *ui, enum ui_action action);
void ui_compose_draw(struct ui *ui, int rows);
bool ui_compose_key(struct ui *ui, int key);
void ui_edit_draw(struct ui *ui, int rows);
bool ui_edit_key(struct ui *ui, wint_t key, bool is_key_code);
void ui_draft_free(struct ui_draft *d);

#endif
