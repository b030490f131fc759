//! The ISMRMRD XML header that fastMRI files keep in their `ismrmrd_header` dataset, reduced to
//! what reconstruction needs: the encoded and reconstructed matrix sizes of the first
//! `<encoding>` (as fastMRI's own loader reads them), and its fields of view, which give the
//! output's voxel size.
//!
//! The parser is a small hand-written one for the subset of XML that ISMRMRD headers use:
//! elements, attributes (skipped), text, comments, processing instructions, a DOCTYPE and CDATA
//! sections. Namespace prefixes on element names are ignored. It checks that tags nest and close
//! properly, so a truncated or corrupted header is an error rather than a silently wrong size.

use std::fmt;

/// Matrix sizes from an ISMRMRD header, `(x, y, z)` as the header lists them.
///
/// In fastMRI files `x` is the readout direction, which is the k-space height axis, and `y` the
/// phase-encode direction, the width axis: a knee file has `kspace` `(slices, coils, 640, 368)`
/// with an encoded matrix of `x = 640, y = 368` and a recon matrix of `320 x 320`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsmrmrdHeader {
    /// `encoding/encodedSpace/matrixSize` `(x, y, z)`.
    pub encoded_size: (usize, usize, usize),
    /// `encoding/reconSpace/matrixSize` `(x, y, z)`.
    pub recon_size: (usize, usize, usize),
    /// `encoding/encodingLimits/kspace_encoding_step_1/center`: the phase-encode counter of
    /// k-space's centre line, which places raw acquisitions (ISMRMRD raw data) on the grid;
    /// `None` when the header does not give it.
    pub kspace_center: Option<usize>,
    /// `encoding/encodingLimits/kspace_encoding_step_2/center`: the second phase-encode
    /// counter of k-space's centre partition (3-D encodings); `None` when not given.
    pub kspace_center_2: Option<usize>,
    /// `encoding/encodedSpace/fieldOfView_mm` `(x, y, z)`; `None` when not given.
    pub encoded_fov_mm: Option<(f64, f64, f64)>,
    /// `encoding/reconSpace/fieldOfView_mm` `(x, y, z)`; `None` when not given.
    pub recon_fov_mm: Option<(f64, f64, f64)>,
    /// `encoding/parallelImaging/calibrationMode`; `None` when not given.
    pub calibration_mode: Option<CalibrationMode>,
    /// The encoded space of the header's second `<encoding>`, if it has one (lines with
    /// `encoding_space_ref` 1: a separately encoded reference scan, for instance). Further
    /// encodings are not read.
    pub second_encoding: Option<EncodedSpace>,
}

/// One `<encoding>`'s encoded space: where its acquisitions lie in k-space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncodedSpace {
    /// `encodedSpace/matrixSize` `(x, y, z)`.
    pub size: (usize, usize, usize),
    /// `encodedSpace/fieldOfView_mm` `(x, y, z)`; `None` when not given.
    pub fov_mm: Option<(f64, f64, f64)>,
    /// `encodingLimits/kspace_encoding_step_1/center`; `None` when not given.
    pub center: Option<usize>,
    /// `encodingLimits/kspace_encoding_step_2/center`; `None` when not given.
    pub center_2: Option<usize>,
}

/// How a parallel-imaging scan acquired its calibration (autocalibration, ACS) lines: ISMRMRD's
/// `calibrationMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationMode {
    /// Within the imaging data: calibration lines are image data too (Siemens "integrated").
    Embedded,
    /// Spread over the images of a series (TSENSE).
    Interleaved,
    /// A reference scan of its own, which may differ in contrast or timing from the imaging
    /// lines (Siemens "separate"): calibration for the coil maps only.
    Separate,
    /// Calibration from outside the scan: as `Separate`.
    External,
    /// Another mode the schema allows (`other`).
    Other,
}

impl CalibrationMode {
    /// Whether lines flagged calibration only (not also imaging) are a reference scan of their
    /// own, not image data.
    pub fn is_separate(self) -> bool {
        matches!(self, CalibrationMode::Separate | CalibrationMode::External)
    }
}

impl IsmrmrdHeader {
    /// Parses the header text. The error (no file name; the caller adds it) says what is
    /// missing or malformed.
    pub fn parse(xml: &str) -> Result<Self, HeaderError> {
        let root = parse_document(xml)?;
        if root.name != "ismrmrdHeader" {
            return Err(HeaderError(format!(
                "root element is <{}>, expected <ismrmrdHeader>",
                root.name
            )));
        }
        let encoding = root.child("encoding").ok_or_else(|| {
            HeaderError("no <encoding> element under <ismrmrdHeader>".to_string())
        })?;
        Ok(IsmrmrdHeader {
            encoded_size: matrix_size(encoding, "encodedSpace")?,
            recon_size: matrix_size(encoding, "reconSpace")?,
            kspace_center: limit_center(encoding, "kspace_encoding_step_1")?,
            kspace_center_2: limit_center(encoding, "kspace_encoding_step_2")?,
            encoded_fov_mm: field_of_view(encoding, "encodedSpace")?,
            recon_fov_mm: field_of_view(encoding, "reconSpace")?,
            calibration_mode: calibration_mode(encoding)?,
            second_encoding: root
                .children
                .iter()
                .filter(|c| c.name == "encoding")
                .nth(1)
                .map(|e| -> Result<EncodedSpace, HeaderError> {
                    Ok(EncodedSpace {
                        size: matrix_size(e, "encodedSpace")?,
                        fov_mm: field_of_view(e, "encodedSpace")?,
                        center: limit_center(e, "kspace_encoding_step_1")?,
                        center_2: limit_center(e, "kspace_encoding_step_2")?,
                    })
                })
                .transpose()
                .map_err(|e| HeaderError(format!("the second <encoding>: {}", e.0)))?,
        })
    }

    /// The voxel size in mm of the reconstructed image, `[readout (height), phase encode
    /// (width), slice]`: the recon space's field of view over its matrix, as Gadgetron's image
    /// headers state it (a 2-D acquisition's slice entry is its thickness; a gap between
    /// slices is not in the header). `None` when the header gives no recon field of view.
    pub fn voxel_size_mm(&self) -> Option<[f32; 3]> {
        let (fx, fy, fz) = self.recon_fov_mm?;
        let (nx, ny, nz) = self.recon_size;
        Some([fx / nx as f64, fy / ny as f64, fz / nz as f64].map(|v| v as f32))
    }
}

/// `encoding/<space>/fieldOfView_mm` as `(x, y, z)` when the header gives it; each must be a
/// positive number.
fn field_of_view(encoding: &Element, space: &str) -> Result<Option<(f64, f64, f64)>, HeaderError> {
    let Some(fov) = encoding
        .child(space)
        .and_then(|s| s.child("fieldOfView_mm"))
    else {
        return Ok(None);
    };
    let axis = |name: &str| -> Result<f64, HeaderError> {
        let text = fov.child(name).map(|el| el.text.trim()).unwrap_or("");
        match text.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
            _ => Err(HeaderError(format!(
                "<encoding>/<{space}>/<fieldOfView_mm>/<{name}> is {text:?}, expected a \
                 positive number of millimetres"
            ))),
        }
    };
    Ok(Some((axis("x")?, axis("y")?, axis("z")?)))
}

/// `encoding/parallelImaging/calibrationMode`, when the header gives it.
fn calibration_mode(encoding: &Element) -> Result<Option<CalibrationMode>, HeaderError> {
    let Some(mode) = encoding
        .child("parallelImaging")
        .and_then(|p| p.child("calibrationMode"))
    else {
        return Ok(None);
    };
    Ok(Some(match mode.text.trim() {
        "embedded" => CalibrationMode::Embedded,
        "interleaved" => CalibrationMode::Interleaved,
        "separate" => CalibrationMode::Separate,
        "external" => CalibrationMode::External,
        "other" => CalibrationMode::Other,
        text => {
            return Err(HeaderError(format!(
                "<encoding>/<parallelImaging>/<calibrationMode> is {text:?}, expected \
                 embedded, interleaved, separate, external or other"
            )))
        }
    }))
}

/// `encoding/encodingLimits/<counter>/center`, when the header gives it.
fn limit_center(encoding: &Element, counter: &str) -> Result<Option<usize>, HeaderError> {
    let center = encoding
        .child("encodingLimits")
        .and_then(|l| l.child(counter))
        .and_then(|l| l.child("center"));
    center
        .map(|el| {
            el.text.trim().parse::<usize>().map_err(|_| {
                HeaderError(format!(
                    "<encoding>/<encodingLimits>/<{counter}>/<center> is {:?}, expected a \
                     non-negative integer",
                    el.text.trim()
                ))
            })
        })
        .transpose()
}

/// Why an ISMRMRD header could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError(pub String);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `encoding/<space>/matrixSize` as `(x, y, z)`; `z` defaults to 1 when absent.
fn matrix_size(encoding: &Element, space: &str) -> Result<(usize, usize, usize), HeaderError> {
    let matrix = encoding
        .child(space)
        .and_then(|s| s.child("matrixSize"))
        .ok_or_else(|| HeaderError(format!("no <encoding>/<{space}>/<matrixSize> element")))?;
    let axis = |name: &str, required: bool| -> Result<Option<usize>, HeaderError> {
        let Some(el) = matrix.child(name) else {
            return if required {
                Err(HeaderError(format!(
                    "no <{name}> in <encoding>/<{space}>/<matrixSize>"
                )))
            } else {
                Ok(None)
            };
        };
        let text = el.text.trim();
        match text.parse::<usize>() {
            Ok(v) if v > 0 => Ok(Some(v)),
            _ => Err(HeaderError(format!(
                "<encoding>/<{space}>/<matrixSize>/<{name}> is {text:?}, expected a positive integer"
            ))),
        }
    };
    let x = axis("x", true)?.unwrap_or(1);
    let y = axis("y", true)?.unwrap_or(1);
    let z = axis("z", false)?.unwrap_or(1);
    Ok((x, y, z))
}

/// One XML element: its local name (prefix removed), children and concatenated direct text.
#[derive(Debug, Default)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
}

impl Element {
    /// The first child element called `name`.
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Parses a whole document and returns its root element.
fn parse_document(xml: &str) -> Result<Element, HeaderError> {
    let mut p = Parser { s: xml, pos: 0 };
    // Byte-order mark.
    p.eat("\u{feff}");
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let Some(lt) = p.rest().find('<') else {
            match stack.last_mut() {
                Some(top) => top.text.push_str(p.rest()),
                None if !p.rest().trim().is_empty() => {
                    return Err(p.error("text outside the root element"));
                }
                None => {}
            }
            break;
        };
        let text = &p.rest()[..lt];
        match stack.last_mut() {
            Some(top) => top.text.push_str(text),
            None if !text.trim().is_empty() => {
                return Err(p.error("text outside the root element"));
            }
            None => {}
        }
        p.pos += lt;
        if p.eat("<!--") {
            p.skip_past("-->", "unterminated comment")?;
        } else if p.eat("<?") {
            p.skip_past("?>", "unterminated processing instruction")?;
        } else if p.eat("<![CDATA[") {
            let end = p
                .rest()
                .find("]]>")
                .ok_or_else(|| p.error("unterminated CDATA section"))?;
            let data = &p.rest()[..end];
            match stack.last_mut() {
                Some(top) => top.text.push_str(data),
                None => return Err(p.error("CDATA outside the root element")),
            }
            p.pos += end + 3;
        } else if p.eat("<!") {
            // DOCTYPE (no internal subset with nested '>' in ISMRMRD headers).
            p.skip_past(">", "unterminated declaration")?;
        } else if p.eat("</") {
            let name = p.name()?;
            p.skip_space();
            if !p.eat(">") {
                return Err(p.error(&format!("malformed closing tag </{name}")));
            }
            let el = stack
                .pop()
                .ok_or_else(|| p.error(&format!("closing tag </{name}> without an opening tag")))?;
            if el.name != local(&name) {
                return Err(p.error(&format!(
                    "closing tag </{name}> does not match <{}>",
                    el.name
                )));
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None => {
                    if root.is_some() {
                        return Err(p.error("more than one root element"));
                    }
                    root = Some(el);
                }
            }
        } else {
            p.pos += 1; // '<'
            let name = p.name()?;
            let self_closing = p.skip_attributes(&name)?;
            let el = Element {
                name: local(&name).to_string(),
                ..Element::default()
            };
            if stack.is_empty() && root.is_some() {
                return Err(p.error("more than one root element"));
            }
            if self_closing {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            } else {
                stack.push(el);
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(HeaderError(format!(
            "XML ends inside <{}> (truncated header?)",
            open.name
        )));
    }
    root.ok_or_else(|| HeaderError("no XML element found".to_string()))
}

/// The name without a namespace prefix.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// A cursor over the document.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    /// Consumes `token` if the input continues with it.
    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn skip_past(&mut self, token: &str, what: &str) -> Result<(), HeaderError> {
        let end = self.rest().find(token).ok_or_else(|| self.error(what))?;
        self.pos += end + token.len();
        Ok(())
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// An element name (letters, digits, `_ - . :`).
    fn name(&mut self) -> Result<String, HeaderError> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("expected an element name after '<'"));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    /// Skips the attributes of an opening tag up to and including `>` or `/>`; returns whether
    /// the tag closes itself.
    fn skip_attributes(&mut self, element: &str) -> Result<bool, HeaderError> {
        loop {
            self.skip_space();
            if self.eat("/>") {
                return Ok(true);
            }
            if self.eat(">") {
                return Ok(false);
            }
            if self.rest().is_empty() {
                return Err(self.error(&format!("unterminated tag <{element} (truncated header?)")));
            }
            let name = self.name()?;
            self.skip_space();
            if !self.eat("=") {
                return Err(self.error(&format!("attribute {name} of <{element}> has no value")));
            }
            self.skip_space();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => {
                    return Err(
                        self.error(&format!("attribute {name} of <{element}> is not quoted"))
                    )
                }
            };
            self.pos += 1;
            let end = self
                .rest()
                .find(quote)
                .ok_or_else(|| self.error(&format!("unterminated value of attribute {name}")))?;
            self.pos += end + 1;
        }
    }

    /// An error at the current position, with its line number.
    fn error(&self, what: &str) -> HeaderError {
        let line = self.s[..self.pos].matches('\n').count() + 1;
        HeaderError(format!("malformed XML at line {line}: {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNEE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <!-- comment with <tags> inside -->
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <encoding>
    <trajectory>cartesian</trajectory>
    <encodedSpace>
      <matrixSize><x>640</x><y>368</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>280</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140.0</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits><kspace_encoding_step_1><minimum>0</minimum></kspace_encoding_step_1></encodingLimits>
  </encoding>
  <encoding><encodedSpace><matrixSize><x>1</x><y>1</y></matrixSize></encodedSpace>
    <reconSpace><matrixSize><x>1</x><y>1</y></matrixSize></reconSpace></encoding>
  <empty attr='v'/>
</ismrmrdHeader>
"#;

    #[test]
    fn reads_the_first_encoding() {
        let h = IsmrmrdHeader::parse(KNEE).unwrap();
        assert_eq!(h.encoded_size, (640, 368, 1));
        assert_eq!(h.recon_size, (320, 320, 1));
        assert_eq!(h.encoded_fov_mm, Some((280.0, 280.0, 4.5)));
        assert_eq!(h.recon_fov_mm, Some((140.0, 140.0, 3.0)));
        // 140 mm over 320 pixels; the slice thickness.
        assert_eq!(h.voxel_size_mm(), Some([0.4375, 0.4375, 3.0]));
    }

    #[test]
    fn calibration_mode_is_read_and_checked() {
        let with = |mode: &str| {
            KNEE.replace(
                "<trajectory>",
                &format!(
                    "<parallelImaging><calibrationMode>{mode}</calibrationMode>\
                     </parallelImaging><trajectory>"
                ),
            )
        };
        assert_eq!(IsmrmrdHeader::parse(KNEE).unwrap().calibration_mode, None);
        let separate = IsmrmrdHeader::parse(&with("separate")).unwrap();
        assert_eq!(separate.calibration_mode, Some(CalibrationMode::Separate));
        assert!(CalibrationMode::Separate.is_separate());
        assert!(CalibrationMode::External.is_separate());
        assert!(!CalibrationMode::Embedded.is_separate());
        let e = IsmrmrdHeader::parse(&with("grappa"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("calibrationMode") && e.contains("\"grappa\""),
            "{e}"
        );
    }

    #[test]
    fn a_second_encoding_is_read_and_checked() {
        // KNEE's own second encoding, a 1 x 1 matrix without a field of view.
        assert_eq!(
            IsmrmrdHeader::parse(KNEE).unwrap().second_encoding,
            Some(EncodedSpace {
                size: (1, 1, 1),
                fov_mm: None,
                center: None,
                center_2: None,
            })
        );
        let one = "<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>8</x><y>8</y>\
                   </matrixSize></encodedSpace><reconSpace><matrixSize><x>8</x><y>8</y>\
                   </matrixSize></reconSpace></encoding></ismrmrdHeader>";
        assert_eq!(IsmrmrdHeader::parse(one).unwrap().second_encoding, None);
        // One inserted after the first becomes the second.
        let second = |x: &str| {
            KNEE.replace(
                "</encoding>",
                &format!(
                    "</encoding><encoding><encodedSpace><matrixSize><x>{x}</x><y>24</y><z>1</z>\
                     </matrixSize><fieldOfView_mm><x>280</x><y>210</y><z>4.5</z>\
                     </fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>32</x><y>24</y>\
                     </matrixSize></reconSpace><encodingLimits><kspace_encoding_step_1>\
                     <center>12</center></kspace_encoding_step_1></encodingLimits></encoding>"
                ),
            )
        };
        let h = IsmrmrdHeader::parse(&second("64")).unwrap();
        assert_eq!(
            h.second_encoding,
            Some(EncodedSpace {
                size: (64, 24, 1),
                fov_mm: Some((280.0, 210.0, 4.5)),
                center: Some(12),
                center_2: None,
            })
        );
        // The first encoding is still the image's.
        assert_eq!(
            h.encoded_size,
            IsmrmrdHeader::parse(KNEE).unwrap().encoded_size
        );
        let e = IsmrmrdHeader::parse(&second("-2")).unwrap_err().to_string();
        assert!(
            e.contains("second <encoding>") && e.contains("\"-2\""),
            "{e}"
        );
    }

    #[test]
    fn prefixed_names_cdata_and_missing_z() {
        let xml = "<ns:ismrmrdHeader xmlns:ns='x'><ns:encoding><ns:encodedSpace><ns:matrixSize>\
                   <ns:x><![CDATA[64]]></ns:x><ns:y> 48 </ns:y></ns:matrixSize></ns:encodedSpace>\
                   <ns:reconSpace><ns:matrixSize><ns:x>32</ns:x><ns:y>32</ns:y></ns:matrixSize>\
                   </ns:reconSpace></ns:encoding></ns:ismrmrdHeader>";
        let h = IsmrmrdHeader::parse(xml).unwrap();
        assert_eq!(h.encoded_size, (64, 48, 1));
        assert_eq!(h.recon_size, (32, 32, 1));
        assert_eq!(h.voxel_size_mm(), None);
    }

    #[test]
    fn malformed_headers_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "no XML element"),
            ("not xml at all", "text outside the root"),
            (&KNEE[..KNEE.find("<reconSpace>").unwrap()], "truncated"),
            (
                "<ismrmrdHeader><encoding></ismrmrdHeader>",
                "does not match",
            ),
            ("<a/>", "expected <ismrmrdHeader>"),
            ("<ismrmrdHeader></ismrmrdHeader>", "no <encoding>"),
            (
                "<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>6.5</x><y>2</y>\
                 </matrixSize></encodedSpace></encoding></ismrmrdHeader>",
                "expected a positive integer",
            ),
            (
                "<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>6</x><y>2</y>\
                 </matrixSize></encodedSpace></encoding></ismrmrdHeader>",
                "<reconSpace>",
            ),
            ("<ismrmrdHeader a=1></ismrmrdHeader>", "not quoted"),
            (
                "<ismrmrdHeader><!-- x </ismrmrdHeader>",
                "unterminated comment",
            ),
            ("<a></a><b></b>", "more than one root"),
            (
                &KNEE.replace("<y>140.0</y>", "<y>-1</y>"),
                "<reconSpace>/<fieldOfView_mm>/<y> is \"-1\", expected a positive number",
            ),
            (
                &KNEE.replace("<z>4.5</z>", ""),
                "<encodedSpace>/<fieldOfView_mm>/<z> is \"\"",
            ),
        ];
        for (xml, needle) in cases {
            let err = IsmrmrdHeader::parse(xml).unwrap_err().0;
            assert!(err.contains(needle), "{xml:?}: {err:?} lacks {needle:?}");
        }
    }
}
