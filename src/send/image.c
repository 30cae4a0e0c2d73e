/*
 * image.c
 *		Owns recognising PNG, JPEG, GIF and WebP from their magic bytes and
 *		reading width and height from their headers.
 *
 * Written by hand: only the first few header bytes are needed, and no image
 * library is worth linking into the server for that.  Every read is bounds
 * checked, since the bytes come from the caller.
 */
#include "postgres.h"

#include "send/image.h"

static int
be16(const uint8 *p)
{
	return (p[0] << 8) | p[1];
}

static int
le16(const uint8 *p)
{
	return p[0] | (p[1] << 8);
}

static uint32
be32(const uint8 *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

/*
 * A width or height as the header gives it, or -1 (unknown) when it gives
 * none: 0 is no size (JPEG's height 0 means "see the DNL marker", GIF's and
 * VP8's 0 are corrupt), and PNG's 32 bits may not fit an int.  So a size
 * stored in evc.images is always positive or unknown.
 */
static int
dimension(uint32 v)
{
	return v >= 1 && v <= PG_INT32_MAX ? (int) v : -1;
}

static void
sniff_png(const uint8 *p, size_t len, EvcImageInfo *info)
{
	info->content_type = "image/png";
	/* The IHDR chunk comes first: width and height at bytes 16 and 20. */
	if (len >= 24 && memcmp(p + 12, "IHDR", 4) == 0)
	{
		info->width = dimension(be32(p + 16));
		info->height = dimension(be32(p + 20));
	}
}

static void
sniff_jpeg(const uint8 *p, size_t len, EvcImageInfo *info)
{
	size_t		i = 2;

	info->content_type = "image/jpeg";
	/* Walk the segments to the first start-of-frame marker. */
	while (i + 9 < len)
	{
		uint8		marker;

		if (p[i] != 0xFF)
			return;
		marker = p[i + 1];
		if (marker == 0xFF)
		{
			i++;
			continue;
		}
		if (marker >= 0xC0 && marker <= 0xCF &&
			marker != 0xC4 && marker != 0xC8 && marker != 0xCC)
		{
			info->height = dimension(be16(p + i + 5));
			info->width = dimension(be16(p + i + 7));
			return;
		}
		if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01)
		{
			i += 2;
			continue;
		}
		i += 2 + be16(p + i + 2);
	}
}

static void
sniff_webp(const uint8 *p, size_t len, EvcImageInfo *info)
{
	info->content_type = "image/webp";
	if (len >= 30 && memcmp(p + 12, "VP8 ", 4) == 0)
	{
		info->width = dimension(le16(p + 26) & 0x3FFF);
		info->height = dimension(le16(p + 28) & 0x3FFF);
	}
	else if (len >= 25 && memcmp(p + 12, "VP8L", 4) == 0 && p[20] == 0x2F)
	{
		uint32		b = p[21] | (p[22] << 8) | (p[23] << 16) | ((uint32) p[24] << 24);

		info->width = (int) (b & 0x3FFF) + 1;
		info->height = (int) ((b >> 14) & 0x3FFF) + 1;
	}
	else if (len >= 30 && memcmp(p + 12, "VP8X", 4) == 0)
	{
		info->width = (int) (p[24] | (p[25] << 8) | (p[26] << 16)) + 1;
		info->height = (int) (p[27] | (p[28] << 8) | (p[29] << 16)) + 1;
	}
}

EvcImageInfo
evc_image_sniff(const uint8 *p, size_t len)
{
	EvcImageInfo info = {NULL, -1, -1};

	if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
		sniff_png(p, len, &info);
	else if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
		sniff_jpeg(p, len, &info);
	else if (len >= 10 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
	{
		info.content_type = "image/gif";
		info.width = dimension(le16(p + 6));
		info.height = dimension(le16(p + 8));
	}
	else if (len >= 16 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
		sniff_webp(p, len, &info);
	/* a size is both dimensions or none: callers print them as a pair */
	if (info.width < 0 || info.height < 0)
		info.width = info.height = -1;
	return info;
}
