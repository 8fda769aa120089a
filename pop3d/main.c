/* pop3d: placeholder main until the component lands in this session. */
#include <stdio.h>
int main(void)
{
	fputs("pop3d: not built yet\n", stderr);
	return 1;
}
