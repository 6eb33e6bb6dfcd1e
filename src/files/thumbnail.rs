//! The thumbnail of an image upload: what a message shows inline, so the page never shows
//! the uploader's own bytes. Only the four raster types a browser shows are read (never
//! SVG, which is a document that can run script). The header is read first and an image
//! over the pixel limit is refused before a pixel is decoded; the decoder then runs under
//! `image::Limits`, so a small file that unpacks to gigabytes (a decompression bomb) is
//! refused, not allocated.

use crate::domain::{Error, Result};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader, Limits,
};
use std::io::Cursor;

/// The box a thumbnail fits in: a message's picture, sharp on a 2x screen at 180 px.
pub const BOX: u32 = 360;
/// The most pixels an image may have: a 40 MP camera's pictures are taken, decoded as
/// RGBA in 160 MB.
pub const MAX_PIXELS: u64 = 40_000_000;
/// The longest side: a panorama's 16,384 px, and no 1 x 40,000,000 strip.
pub const MAX_SIDE: u32 = 16_384;
/// What a decoder may hold at once, the decoded image included; a 16-bit image at the
/// pixel limit is over it and refused.
const MAX_ALLOC: u64 = 256 * 1024 * 1024;
const JPEG_QUALITY: u8 = 80;

/// A thumbnail, encoded.
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// The format an upload's type claims and its name for the caller, for the four types
/// that get a thumbnail; `None` for every other type, SVG among them.
pub fn format_of(content_type: &str) -> Option<(ImageFormat, &'static str)> {
    match content_type {
        "image/png" => Some((ImageFormat::Png, "PNG")),
        "image/jpeg" => Some((ImageFormat::Jpeg, "JPEG")),
        "image/gif" => Some((ImageFormat::Gif, "GIF")),
        "image/webp" => Some((ImageFormat::WebP, "WebP")),
        _ => None,
    }
}

/// Makes the thumbnail of `bytes`, which claim to be `format` (`name` for the caller).
/// 413 for an image over the limits, 415 for one that cannot be read. CPU-bound: run it
/// off the async workers.
pub fn make(bytes: &[u8], format: ImageFormat, name: &str) -> Result<Thumbnail> {
    let refused = |err: ImageError| match err {
        ImageError::Limits(_) => Error::PayloadTooLarge(format!(
            "image would take more than {} MiB to decode; it is not accepted",
            MAX_ALLOC / (1024 * 1024)
        )),
        other => {
            tracing::debug!(error = %other, "an upload is not a readable image");
            Error::UnsupportedMediaType(format!("not a readable {name} image"))
        }
    };
    // The bytes decide the format (a JPEG sent as .png is still read), the claim when they
    // say nothing.
    let reader = |limits: Limits| {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format)
            .with_guessed_format()
            .map_err(|err| refused(err.into()))?;
        reader.limits(limits);
        Ok::<_, Error>(reader)
    };
    // The side limits are ours to say, after the header: the decoder's own would refuse
    // without the sizes.
    let mut header_only = Limits::default();
    header_only.max_alloc = Some(MAX_ALLOC);
    let (width, height) = reader(header_only)?.into_dimensions().map_err(refused)?;
    check_size(width, height)?;

    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut decoder = reader(limits.clone())?.into_decoder().map_err(refused)?;
    // The decoded image counts against the budget too (as `ImageReader::decode` does).
    limits.reserve(decoder.total_bytes()).map_err(refused)?;
    // A phone's photo is stored sideways with a note to turn it: the thumbnail is turned.
    let orientation = decoder.orientation().map_err(refused)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(refused)?;
    image.apply_orientation(orientation);
    encode(&shrink(image))
}

fn check_size(width: u32, height: u32) -> Result<()> {
    let too_large = |limit: String| {
        Err(Error::PayloadTooLarge(format!(
            "image is {width}x{height} pixels; at most {limit} are accepted"
        )))
    };
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return too_large(format!("{} megapixels", MAX_PIXELS / 1_000_000));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return too_large(format!("{MAX_SIDE} pixels a side"));
    }
    Ok(())
}

/// Fits the image in the box, never enlarging it. Far larger images are averaged over
/// each target pixel's area (fast, and exact enough at such ratios); near the box a
/// filter avoids the aliasing that averaging gives there.
fn shrink(image: DynamicImage) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    if width <= BOX && height <= BOX {
        image
    } else if width > 2 * BOX || height > 2 * BOX {
        image.thumbnail(BOX, BOX)
    } else {
        image.resize(BOX, BOX, FilterType::CatmullRom)
    }
}

/// JPEG, smaller, unless some pixel is see-through: then PNG, which keeps it.
fn encode(image: &DynamicImage) -> Result<Thumbnail> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let rgba = image.to_rgba8();
    let see_through = image.has_alpha() && rgba.pixels().any(|p| p[3] < u8::MAX);
    let (written, content_type) = if see_through {
        let written = PngEncoder::new(&mut bytes).write_image(
            rgba.as_raw(),
            width,
            height,
            ExtendedColorType::Rgba8,
        );
        (written, "image/png")
    } else {
        let rgb = image.to_rgb8();
        let written = JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).write_image(
            rgb.as_raw(),
            width,
            height,
            ExtendedColorType::Rgb8,
        );
        (written, "image/jpeg")
    };
    // The image was decoded and fits the box: failing to write it is ours.
    written.map_err(|err| Error::Internal(format!("writing a thumbnail: {err}")))?;
    Ok(Thumbnail {
        bytes,
        content_type,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn status<T>(result: Result<T>) -> (u16, String) {
        match result {
            Ok(_) => (200, String::new()),
            Err(err) => (err.status_code(), err.to_string()),
        }
    }

    #[test]
    fn a_large_opaque_image_becomes_a_jpeg_in_the_box() {
        let image = RgbImage::from_fn(1200, 800, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 9]));
        let png = encoded(image.into(), ImageFormat::Png);
        let thumb = make(&png, ImageFormat::Png, "PNG").unwrap();
        assert_eq!((thumb.width, thumb.height), (360, 240));
        assert_eq!(thumb.content_type, "image/jpeg");
        let back = image::load_from_memory(&thumb.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (360, 240));
    }

    #[test]
    fn see_through_stays_png_and_small_is_never_enlarged() {
        let image = RgbaImage::from_fn(100, 50, |x, _| {
            Rgba([200, 0, 0, if x < 50 { 0 } else { 255 }])
        });
        let png = encoded(image.into(), ImageFormat::Png);
        let thumb = make(&png, ImageFormat::Png, "PNG").unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.content_type),
            (100, 50, "image/png")
        );
        // An alpha channel every pixel of which is opaque is no reason for PNG.
        let opaque = RgbaImage::from_pixel(500, 400, Rgba([1, 2, 3, 255]));
        let png = encoded(opaque.into(), ImageFormat::Png);
        let thumb = make(&png, ImageFormat::Png, "PNG").unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.content_type),
            (360, 288, "image/jpeg")
        );
    }

    #[test]
    fn gif_and_a_mislabelled_jpeg_are_read() {
        let image = RgbaImage::from_pixel(400, 400, Rgba([0, 90, 0, 255]));
        let gif = encoded(image.clone().into(), ImageFormat::Gif);
        let thumb = make(&gif, ImageFormat::Gif, "GIF").unwrap();
        assert_eq!((thumb.width, thumb.height), (360, 360));
        let jpeg = encoded(
            DynamicImage::from(image).to_rgb8().into(),
            ImageFormat::Jpeg,
        );
        assert_eq!(status(make(&jpeg, ImageFormat::Png, "PNG")).0, 200);
    }

    #[test]
    fn text_and_a_cut_image_are_not_images() {
        assert_eq!(
            status(make(b"just some text", ImageFormat::Png, "PNG")),
            (415, "not a readable PNG image".into())
        );
        let png = encoded(RgbImage::new(300, 300).into(), ImageFormat::Png);
        assert_eq!(
            status(make(&png[..png.len() / 2], ImageFormat::Png, "PNG")).0,
            415
        );
        assert_eq!(status(make(&[], ImageFormat::WebP, "WebP")).0, 415);
    }

    #[test]
    fn sizes_over_the_limits_are_refused_before_decoding() {
        assert_eq!(
            status(check_size(100_000, 100_000)),
            (
                413,
                "image is 100000x100000 pixels; at most 40 megapixels are accepted".into()
            )
        );
        assert_eq!(
            status(check_size(20_000, 10)),
            (
                413,
                "image is 20000x10 pixels; at most 16384 pixels a side are accepted".into()
            )
        );
        assert!(check_size(8_000, 5_000).is_ok());
    }

    #[test]
    fn only_the_four_raster_types_get_a_thumbnail() {
        for t in ["image/svg+xml", "text/html", "application/pdf", "image/bmp"] {
            assert!(format_of(t).is_none(), "{t}");
        }
        assert!(format_of("image/webp").is_some());
    }
}
