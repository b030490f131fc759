//! The UNet architecture description and its validation: the runtime's
//! [`msm::unet::config`], shared so the trainer and the runtime read the same fields.

pub use msm::unet::config::*;
