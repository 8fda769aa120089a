/* mta: placeholder main until the component lands in this session. */
#include <stdio.h>
int main(void)
{
	fputs("mta: not built yet\n", stderr);
	return 1;
}
