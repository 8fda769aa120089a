/* ui.c: the full-screen client (being written). */
#include <stdio.h>

#include "mua.h"

int mua_ui_run(uv_loop_t *loop, struct mua_accounts *accounts, struct mua_account *first)
{
	fputs("mua: the screen is not built yet\n", stderr);
	return EX_UNAVAILABLE;
}
