/*
 * image.h
 *		Recognising image formats from their first bytes.
 */
#ifndef EVC_IMAGE_H
#define EVC_IMAGE_H

typedef struct EvcImageInfo
{
	const char *content_type;	/* NULL: not a format we know */
	int			width;			/* -1: unknown */
	int			height;
} EvcImageInfo;

extern EvcImageInfo evc_image_sniff(const uint8 *p, size_t len);

#endif
