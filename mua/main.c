/* mua: placeholder main until the component lands in this session. */
#include <stdio.h>
int main(void)
{
	fputs("mua: not built yet\n", stderr);
	return 1;
}
