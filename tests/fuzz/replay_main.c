/* replay_main.c: feeds every file of a corpus directory once to a libFuzzer
 * entry point, so ctest can replay saved inputs without clang's fuzzer runtime. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads one whole file; returns NULL on error. */
static uint8_t *read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, len = 0;
	uint8_t *data = malloc(cap);
	size_t n;
	while (data != NULL && (n = fread(data + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			uint8_t *grown = realloc(data, cap);
			if (grown == NULL) {
				free(data);
				fclose(f);
				return NULL;
			}
			data = grown;
		}
	}
	fclose(f);
	*len_r = len;
	return data;
}

int main(int argc, char **argv)
{
	int replayed = 0;
	for (int i = 1; i < argc; i++) {
		DIR *dir = opendir(argv[i]);
		if (dir == NULL) {
			fprintf(stderr, "cannot open corpus %s\n", argv[i]);
			return 1;
		}
		struct dirent *entry;
		while ((entry = readdir(dir)) != NULL) {
			if (entry->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], entry->d_name);
			size_t len;
			uint8_t *data = read_file(path, &len);
			if (data == NULL) {
				fprintf(stderr, "cannot read %s\n", path);
				closedir(dir);
				return 1;
			}
			LLVMFuzzerTestOneInput(data, len);
			free(data);
			replayed++;
		}
		closedir(dir);
	}
	printf("replayed %d inputs\n", replayed);
	return replayed > 0 ? 0 : 1;
}
