//! The per-slice inputs of a volume run (`msm reconstruct` and `msm recon` on a volume): which
//! slices (`--slices`), and for each one its k-space on the target grid (compressed to virtual
//! coils with `--virtual-coils`), its column mask and the SENSE operator of its coil maps.

use super::coilmaps::{MapsArgs, Method};
use super::data;
use super::scan::{read_stack, Scan};
use msm::coils::Compression;
use msm::mask::Mask;
use msm::sense::Sense;
use msm::volume::GridPlan;
use msm::{Error, Result, C32};
use ndarray::{s, Array3, Array4};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Where the coil maps come from, as the command line says (checked before any file is read).
pub enum MapsChoice<'a> {
    /// A maps file on the scan's grid.
    File(&'a Path),
    /// Estimated from each slice's ACS.
    Estimate(Method, MapsArgs),
}

impl<'a> MapsChoice<'a> {
    /// The choice for an optional maps file, `--maps-method` and the estimation options: an
    /// estimation option beside a maps file, or one that the method ignores, is an error.
    pub fn new(
        maps: Option<&'a Path>,
        method: Option<Method>,
        opts: &MapsArgs,
    ) -> Result<MapsChoice<'a>> {
        match maps {
            Some(p) => {
                let why = format!("the coil maps come from {}", p.display());
                if method.is_some() {
                    return Err(Error::invalid(format!(
                        "--maps-method sets how coil maps are estimated, but {why}"
                    )));
                }
                opts.check_none(&why)?;
                Ok(MapsChoice::File(p))
            }
            None => {
                let method = method.unwrap_or(Method::Espirit);
                opts.check_for(method)?;
                Ok(MapsChoice::Estimate(method, opts.clone()))
            }
        }
    }
}

/// Where each slice's sampling mask comes from.
#[derive(Clone)]
enum MaskSource {
    /// One mask for every slice (`--mask`, or the file's `mask` dataset).
    Fixed(Mask),
    /// The columns of each slice that hold data, or its entries for slices along the readout
    /// ([`Scan::detected_mask`]).
    Detect,
}

/// Where each slice's coil maps come from.
#[derive(Clone)]
enum MapsSource {
    /// A maps file on the scan's grid: one set for all slices, or one per slice of the file
    /// (shared by the images of a series).
    File(Arc<Array4<C32>>),
    /// Estimated from each slice's ACS.
    Estimate(Method, MapsArgs),
}

/// What every slice of a volume run reads.
pub struct SliceInputs {
    file: Scan,
    plan: GridPlan,
    mask: MaskSource,
    maps: MapsSource,
    virtual_coils: Option<usize>,
    /// The image of a series the scan is (`repetition 1`), named in errors; empty for one.
    image: String,
}

impl SliceInputs {
    /// Reads the mask file (`mask`; else the file's `mask` dataset, else each slice's columns
    /// with data) and the maps file of `maps`, and checks `virtual_coils` against the coils.
    pub fn new(
        file: Scan,
        plan: GridPlan,
        mask: Option<&Path>,
        maps: MapsChoice,
        virtual_coils: Option<usize>,
    ) -> Result<SliceInputs> {
        if let Some(n) = virtual_coils.filter(|&n| n > file.coils()) {
            return Err(Error::format(
                file.path(),
                format!(
                    "--virtual-coils {n}: the k-space has {} coils; expected at most that many \
                     virtual coils",
                    file.coils()
                ),
            ));
        }
        let (h0, w0) = file.kspace_size();
        let mask = match (mask, file.mask()) {
            (Some(p), _) => MaskSource::Fixed(data::read_mask(p, h0, w0)?),
            (None, Some(m)) => MaskSource::Fixed(Mask::Columns(m.to_vec())),
            (None, None) => MaskSource::Detect,
        };
        if let MaskSource::Fixed(m) = &mask {
            fits_pattern(m, &plan, &file, "the mask is a 2-D pattern")?;
        }
        let maps = match maps {
            MapsChoice::File(p) => MapsSource::File(Arc::new(read_maps(p, &file)?)),
            MapsChoice::Estimate(method, opts) => MapsSource::Estimate(method, opts),
        };
        Ok(SliceInputs {
            file,
            plan,
            mask,
            maps,
            virtual_coils,
            image: String::new(),
        })
    }

    /// Names the scan's image of a series (`repetition 1`) in the errors of its slices.
    pub fn name_image(&mut self, image: String) {
        self.image = image;
    }

    /// The inputs of another image of the series, `image`, from the same file, `file`, with
    /// these inputs' grid plan and mask and maps sources: it must have the coils, grid and
    /// slice count of this image.
    pub fn for_image(&self, file: Scan, image: String) -> Result<SliceInputs> {
        let shape = |f: &Scan| (f.num_slices(), f.coils(), f.kspace_size());
        let (n, c, grid) = shape(&self.file);
        let along = |f: &Scan| {
            if f.along_readout() {
                "slices along the readout"
            } else {
                "slices along the partitions or 2-D slices"
            }
        };
        if shape(&file) != (n, c, grid) || along(&file) != along(&self.file) {
            let (n2, c2, grid2) = shape(&file);
            return Err(Error::format(
                file.path(),
                format!(
                    "{image} has {n2} slices of {c2} coils on a {grid2:?} grid ({}), {} has \
                     {n} of {c} on {grid:?} ({}); expected every image of a series alike",
                    along(&file),
                    self.image,
                    along(&self.file)
                ),
            ));
        }
        Ok(SliceInputs {
            file,
            plan: self.plan,
            mask: self.mask.clone(),
            maps: self.maps.clone(),
            virtual_coils: self.virtual_coils,
            image,
        })
    }

    /// The image of a series the scan is (`repetition 1`); empty for one.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The scan of the image.
    pub fn scan(&self) -> &Scan {
        &self.file
    }

    /// How the scan's grid reaches the target and output grids.
    pub fn plan(&self) -> &GridPlan {
        &self.plan
    }

    /// An error of slice `index`, naming the file and the slice.
    pub fn in_slice(&self, index: usize, e: Error) -> Error {
        match e {
            Error::Invalid(msg) if self.image.is_empty() => {
                Error::format(self.file.path(), format!("slice {index}: {msg}"))
            }
            Error::Invalid(msg) => Error::format(
                self.file.path(),
                format!("{}, slice {index}: {msg}", self.image),
            ),
            other => other,
        }
    }

    /// Slice `index`: its k-space on the target grid (compressed, with `--virtual-coils`, before
    /// its maps are estimated; given maps go through the same matrix), its mask and the SENSE
    /// operator of its maps.
    pub fn acquire(&self, index: usize) -> Result<(Array3<C32>, Mask, Sense)> {
        let path = self.file.path();
        let in_slice = |e: Error| self.in_slice(index, e);
        let k0 = self.file.slice_kspace(index)?;
        let mask = match &self.mask {
            MaskSource::Fixed(m) => m.clone(),
            MaskSource::Detect => {
                let mask = self.file.detected_mask(&k0);
                fits_pattern(
                    &mask,
                    &self.plan,
                    &self.file,
                    &format!(
                        "slice {index} of the 3-D scan is undersampled along both of its axes \
                         (both phase encodes)"
                    ),
                )?;
                mask
            }
        };
        if mask.count(k0.dim().1) == 0 {
            return Err(Error::format(
                path,
                format!(
                    "slice {index} holds no k-space sample (every value is zero); expected \
                     acquired lines"
                ),
            ));
        }
        let kspace = self.plan.kspace_to_model(k0.view());
        let cc = self
            .virtual_coils
            .map(|n| Compression::svd(kspace.view(), n))
            .transpose()
            .map_err(in_slice)?;
        let kspace = match &cc {
            Some(cc) => cc.apply(kspace.view()).map_err(in_slice)?,
            None => kspace,
        };
        let maps = match &self.maps {
            MapsSource::File(all) => {
                let set = if all.dim().0 == 1 { 0 } else { index };
                let maps = self.plan.maps_to_model(all.slice(s![set, .., .., ..]));
                match &cc {
                    Some(cc) => cc.apply(maps.view()).map_err(in_slice)?,
                    None => maps,
                }
            }
            MapsSource::Estimate(method, opts) => {
                let what = format!("slice {index}");
                // A separate reference scan calibrates the maps; else the slice's own ACS.
                let reference = match self.file.slice_reference(index) {
                    Some(r) => {
                        let r = self.plan.kspace_to_model(r.view());
                        Some(match &cc {
                            Some(cc) => cc.apply(r.view()).map_err(in_slice)?,
                            None => r,
                        })
                    }
                    None => None,
                };
                let (calib, calib_mask) = match &reference {
                    Some(r) => (r.view(), self.file.detected_mask(r)),
                    None => (kspace.view(), mask.clone()),
                };
                opts.estimate(*method, calib, Some(&calib_mask))
                    .map_err(|e| super::ecalib::in_file(path, &what, e))?
                    .maps
            }
        };
        let op = Sense::new(maps).map_err(in_slice)?;
        Ok((kspace, mask, op))
    }
}

/// Checks that a 2-D pattern `mask` (one that does not keep whole columns) fits `plan` as it
/// is: no axis is fully sampled, so the rows cannot be cropped or padded to the model's
/// (GridPlan's step 2) without spreading the acquired entries. `why` says where it came from.
fn fits_pattern(mask: &Mask, plan: &GridPlan, file: &Scan, why: &str) -> Result<()> {
    let ((h0, w0), (hm, wm)) = (plan.scan, plan.model);
    match mask {
        Mask::Pattern(_) if h0 != hm => Err(Error::format(
            file.path(),
            format!(
                "{why}: its k-space slices are {h0}x{w0} (height x width), undersampled along \
                 both axes, but the model's grid is {hm}x{wm}; expected a model of exactly the \
                 slices' grid, {h0}x{w0}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The slice range of `--slices` (`a..b`, `a..`, `..b`, `a`) within `0..count`.
pub fn parse_slices(text: Option<&str>, count: usize, file: &Path) -> Result<Range<usize>> {
    let Some(text) = text else {
        return Ok(0..count);
    };
    let bad = |why: String| {
        Error::format(
            file,
            format!(
                "--slices {text:?}: {why}; expected a..b (slices a to b - 1), a.., ..b or one \
                 index, within the file's {count} slices (0..{count})"
            ),
        )
    };
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| bad(format!("{s:?} is not a slice index")))
    };
    let range = match text.split_once("..") {
        Some((a, b)) => {
            let start = if a.trim().is_empty() { 0 } else { number(a)? };
            let end = if b.trim().is_empty() {
                count
            } else {
                number(b)?
            };
            start..end
        }
        None => {
            let i = number(text)?;
            i..i + 1
        }
    };
    if range.is_empty() {
        return Err(bad("the range is empty".to_string()));
    }
    if range.end > count {
        return Err(bad(format!("slice {} is out of range", range.end - 1)));
    }
    Ok(range)
}

/// A user's coil maps for the volume, `(sets, coils, H0, W0)` with one set or one per slice.
fn read_maps(path: &Path, file: &Scan) -> Result<Array4<C32>> {
    let (h0, w0) = file.kspace_size();
    let (slices, coils) = (file.num_slices(), file.coils());
    let maps = read_stack(path, "coil maps")?;
    let (n, c, h, w) = maps.dim();
    if (c, h, w) != (coils, h0, w0) || (n != 1 && n != slices) {
        return Err(Error::format(
            path,
            format!(
                "coil maps have shape (sets, coils, H, W) = {:?}; expected ({slices} or 1, \
                 {coils}, {h0}, {w0}) for the k-space of {}",
                maps.dim(),
                file.path().display()
            ),
        ));
    }
    Ok(maps)
}
