/*
 * fuzz_image_sniff.c
 *		The image header sniffer (src/send/image.c) on any bytes.  It must
 *		read nothing past the buffer (ASan) and answer a known type, or
 *		NULL, with a size that is positive in both dimensions or unknown
 *		(-1) in both.
 */
#include "fuzz_pg.h"

#include "send/image.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so an overread is caught at once */
	uint8	   *copy = malloc(size ? size : 1);
	EvcImageInfo info;

	memcpy(copy, data, size);
	info = evc_image_sniff(copy, size);
	free(copy);
	if (info.content_type == NULL)
	{
		if (info.width != -1 || info.height != -1)
			fuzz_fail("no type, but a size %dx%d", info.width, info.height);
		return 0;
	}
	if (strncmp(info.content_type, "image/", 6) != 0)
		fuzz_fail("content type \"%s\" is not an image type", info.content_type);
	if (info.width == 0 || info.width < -1 || info.height == 0 || info.height < -1 ||
		(info.width == -1) != (info.height == -1))
		fuzz_fail("size %dx%d for %s", info.width, info.height, info.content_type);
	return 0;
}
