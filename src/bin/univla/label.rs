//! `univla label`: task-centric latent actions for frame pairs, from a folder of frames or the
//! camera topic of a rosbag2 recording.
use std::path::PathBuf;

use univla_ros::bag::image::CameraKind;
use univla_ros::bag::reader::BagReader;
use univla_ros::lam::{run_label_cli, run_label_frames, LabelArgs, LamError};

#[derive(clap::Args)]
pub struct LabelCmd {
    #[command(flatten)]
    pub lam: LabelArgs,
    /// Label the camera frames of this rosbag2 recording (MCAP or sqlite3) instead of --video-frames.
    #[arg(long, conflicts_with = "video_frames")]
    pub bag: Option<PathBuf>,
    /// Camera topic in --bag (sensor_msgs/Image or CompressedImage).
    #[arg(long, default_value = "/camera/image_raw", requires = "bag")]
    pub camera: String,
}

pub fn run(args: LabelCmd) -> anyhow::Result<()> {
    let Some(bag) = &args.bag else {
        run_label_cli(&args.lam)?;
        return Ok(());
    };
    let reader = BagReader::open(bag)?;
    let kind = CameraKind::of_topic(&args.camera, &reader.require_topic(&args.camera)?.type_name)?;
    let frames = reader.messages(&[args.camera.as_str()])?.map(|msg| {
        msg.and_then(|m| kind.decode_rgb(&m, univla_ros::runtime::preprocess::DEFAULT_MAX_PIXELS))
            .map_err(|e| LamError::Input(e.to_string()))
    });
    let report = run_label_frames(&args.lam, frames)?;
    if args.lam.out.is_none() {
        println!("{}", report.to_json()?);
    }
    eprint!("{}", report.summary());
    Ok(())
}
