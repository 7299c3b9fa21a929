//! Camera messages of a bag → [`RgbImage`] (what [`super::replay::ReplayPolicy::step`] and the LAM
//! labeling take). Pixel conversions are the runtime's; only the message handling is here.
use super::cdr::decode;
use super::reader::RawMessage;
use super::BagError;
use crate::ros::msgs::sensor_msgs::{CompressedImage, Image};
use crate::ros::msgs::RosMessage;
use crate::runtime::preprocess::header::check_pixels;
use crate::runtime::preprocess::{PixelEncoding, RgbImage};

/// Characters of a message's `format` field quoted in errors.
const FORMAT_CHARS: usize = 32;

/// Message type of a camera topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraKind {
    /// `sensor_msgs/msg/Image`.
    Raw,
    /// `sensor_msgs/msg/CompressedImage` (JPEG or PNG).
    Compressed,
}

impl CameraKind {
    /// The camera kind of a topic type, or a [`BagError::WrongType`] naming `topic`.
    pub fn of_topic(topic: &str, type_name: &str) -> Result<Self, BagError> {
        if type_name == Image::ros_type() {
            Ok(Self::Raw)
        } else if type_name == CompressedImage::ros_type() {
            Ok(Self::Compressed)
        } else {
            Err(BagError::WrongType {
                topic: topic.to_string(),
                expected: format!("{} or {}", Image::ros_type(), CompressedImage::ros_type()),
                found: type_name.to_string(),
            })
        }
    }

    /// Decodes a camera message to RGB8; images of more than `max_pixels` are refused before
    /// anything is decoded.
    pub fn decode_rgb(self, msg: &RawMessage, max_pixels: u64) -> Result<RgbImage, BagError> {
        match self {
            Self::Raw => image_to_rgb(&decode::<Image>(msg)?, max_pixels),
            Self::Compressed => compressed_to_rgb(&decode::<CompressedImage>(msg)?, max_pixels),
        }
        .map_err(|why| BagError::Decode {
            topic: msg.topic.to_string(),
            type_name: msg.type_name.to_string(),
            log_time_ns: msg.log_time_ns,
            why,
        })
    }
}

/// Converts a raw `sensor_msgs/Image` (any encoding [`PixelEncoding::from_ros`] knows) to RGB8.
pub fn image_to_rgb(img: &Image, max_pixels: u64) -> Result<RgbImage, String> {
    check_pixels(img.width, img.height, max_pixels).map_err(|e| e.to_string())?;
    let encoding = PixelEncoding::from_ros(&img.encoding).map_err(|e| e.to_string())?;
    RgbImage::from_raw(img.width, img.height, img.step as usize, encoding, &img.data).map_err(|e| e.to_string())
}

/// Decodes a `sensor_msgs/CompressedImage` (JPEG or PNG) to RGB8.
pub fn compressed_to_rgb(img: &CompressedImage, max_pixels: u64) -> Result<RgbImage, String> {
    RgbImage::decode_limited(&img.data, max_pixels).map_err(|e| {
        let format: String = img.format.chars().take(FORMAT_CHARS).collect();
        format!("compressed image (format {format:?}): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::preprocess::DEFAULT_MAX_PIXELS;

    #[test]
    fn image_message_fields_reach_the_conversion() {
        let img = Image {
            height: 1,
            width: 2,
            encoding: "bgr8".into(),
            step: 8,
            data: vec![3, 2, 1, 6, 5, 4, 0, 0],
            ..Default::default()
        };
        assert_eq!(
            image_to_rgb(&img, DEFAULT_MAX_PIXELS).unwrap().as_raw(),
            [1, 2, 3, 4, 5, 6]
        );
        let bad = Image {
            encoding: "16UC1".into(),
            ..img.clone()
        };
        assert!(image_to_rgb(&bad, DEFAULT_MAX_PIXELS).unwrap_err().contains("16UC1"));
        // Over the pixel limit: refused before the buffer is looked at.
        let e = image_to_rgb(&img, 1).unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
    }

    #[test]
    fn undecodable_compressed_image_names_its_format() {
        let msg = CompressedImage {
            format: "jpeg".into(),
            data: vec![1, 2, 3],
            ..Default::default()
        };
        assert!(compressed_to_rgb(&msg, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .contains("jpeg"));
    }
}
