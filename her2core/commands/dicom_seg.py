"""`python -m her2core dicom-seg export --mask MASK --reference DICOM_DIR --out seg.dcm`
`python -m her2core dicom-seg import --seg seg.dcm --reference DICOM_DIR --out mask.nii.gz`
`python -m her2core dicom-seg rtstruct --rtstruct rs.dcm --reference DICOM_DIR --out mask.nii.gz`

DICOM Segmentation (highdicom) referencing its source series, and back onto that
series' grid voxel for voxel; RTSTRUCT contours rasterised onto the reference grid.
"""
from __future__ import annotations

NAME = "dicom-seg"
HELP = "write the ROI as a DICOM SEG of its series, or read a SEG / RTSTRUCT back as a mask"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="seg_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser("export", help="mask on a DICOM series' grid -> DICOM SEG")
    e.add_argument("--mask", required=True, help="mask file on the reference series' grid")
    e.add_argument("--reference", required=True, metavar="DICOM_DIR",
                   help="DICOM folder or zip of the source series")
    e.add_argument("--out", required=True, help="DICOM SEG file to write")
    e.add_argument("--series-uid", default=None, help="source series when the folder has several")
    e.add_argument("--label", default="Tumour", help="segment label (default Tumour)")
    e.add_argument("--semiautomatic", action="store_true",
                   help="record the ROI as made with the assisted segmentation")
    e.add_argument("--keep-patient", action="store_true",
                   help="keep the source's patient / study attributes (to store it in that PACS)")
    i = sub.add_parser("import", help="DICOM SEG -> mask on its source series' grid")
    i.add_argument("--seg", required=True, help="DICOM SEG file")
    i.add_argument("--reference", required=True, metavar="DICOM_DIR")
    i.add_argument("--out", required=True, help="mask file to write (e.g. mask.nii.gz)")
    i.add_argument("--segment", default=None, help="segment number or label (several segments)")
    r = sub.add_parser("rtstruct", help="RTSTRUCT ROI -> mask on its reference series' grid")
    r.add_argument("--rtstruct", required=True, help="RTSTRUCT file")
    r.add_argument("--reference", required=True, metavar="DICOM_DIR")
    r.add_argument("--out", required=True, help="mask file to write")
    r.add_argument("--roi", default=None, help="ROI number or name (several ROIs)")


def run(args) -> int:
    from her2core.imaging import load_image, save_image
    from her2core.imaging.dicom_seg import export_dicom_seg, import_dicom_seg, import_rtstruct
    if args.seg_command == "export":
        mask = load_image(args.mask, sequence="mask", modality="SEG", expected_ndim=3)
        res = export_dicom_seg(mask, args.reference, args.out, series_uid=args.series_uid,
                               label=args.label,
                               algorithm="semiautomatic" if args.semiautomatic else "manual",
                               keep_patient=args.keep_patient)
        print(f"DICOM SEG: {res.path} ({res.n_frames} frames) referencing series "
              f"{res.referenced_series_uid}; patient attributes "
              f"{'kept' if res.kept_patient else 'blanked'}")
        return 0
    if args.seg_command == "import":
        mask = import_dicom_seg(args.seg, args.reference, segment=args.segment)
    else:
        mask = import_rtstruct(args.rtstruct, args.reference, roi=args.roi)
    out = save_image(mask, args.out)
    print(f"mask: {out} ({int((mask.array > 0).sum())} voxels) on series "
          f"{mask.meta.get('referenced_series_uid')}")
    return 0
