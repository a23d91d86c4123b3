"""Patient identifiers: keep them out of everything the workbench writes or logs.

Three guards, used together:

1. ``deidentify_dataset`` applies the DICOM PS3.15 Annex E *Basic Application
   Level Confidentiality Profile* to a pydicom Dataset (the attributes of
   Table E.1-1 that identify a person, an institution or a device are removed;
   UIDs are replaced by new ones derived with a one-way hash; private tags and
   curves/overlays are removed). The workbench never stores uploaded DICOM as
   DICOM — images are kept as NIfTI, which carries no identifiers — but any
   DICOM copy it writes goes through this function first.
2. Identifiers seen while reading DICOM headers (patient name, IDs, birth date,
   accession number...) are registered here, and ``RedactingFilter`` replaces
   them by ``[redacted]`` in every log record of the process, whatever logger
   emitted it.
3. ``find_identifiers`` scans written files (reports, exports, CSV, JSON) for
   registered identifiers; exports call it before they hand a file to the user,
   and tests call it on every output.

Written here rather than taken from a package: dicognito and pydicom/deid
replace identifiers with plausible fakes inside DICOM files, which is not what
is needed (the workbench writes no DICOM); what is needed is the attribute list,
log redaction and an output scan, which neither provides.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Iterable

from pydicom.multival import MultiValue

# PS3.15 (2024) Table E.1-1, Basic Profile: attributes with action X / Z / D / U
# that name or point to a person, institution, device, date or free text.
BASIC_PROFILE_REMOVE = (
    "AccessionNumber", "AcquisitionComments", "AcquisitionDate", "AcquisitionDateTime",
    "AcquisitionDeviceProcessingDescription", "AcquisitionTime", "ActualHumanPerformersSequence",
    "AdditionalPatientHistory", "AdmissionID", "AdmittingDate", "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription", "AdmittingTime", "Allergies", "Arbitrary", "AuthorObserverSequence",
    "BranchOfService", "CommentsOnThePerformedProcedureStep", "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorName", "ContentCreatorIdentificationCodeSequence", "ContentDate", "ContentTime",
    "ContributionDescription", "CountryOfResidence", "CurrentPatientLocation", "CurveDate", "CurveTime",
    "CustodialOrganizationSequence", "DataSetTrailingPadding", "DerivationDescription",
    "DetectorID", "DeviceSerialNumber", "DeviceUID", "DistributionAddress", "DistributionName",
    "EthnicGroup", "FillerOrderNumberImagingServiceRequest", "FrameComments", "GantryID",
    "GeneratorID", "GraphicAnnotationSequence", "HumanPerformerName", "HumanPerformerOrganization",
    "IconImageSequence", "IdentifyingComments", "ImageComments", "ImagePresentationComments",
    "ImagingServiceRequestComments", "Impressions", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionCodeSequence", "InstitutionName", "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence", "InterpretationApproverSequence",
    "InterpretationAuthor", "InterpretationDiagnosisDescription", "InterpretationIDIssuer",
    "InterpretationRecorder", "InterpretationText", "InterpretationTranscriber", "IssuerOfAdmissionID",
    "IssuerOfPatientID", "IssuerOfServiceEpisodeID", "MedicalAlerts", "MedicalRecordLocator",
    "MilitaryRank", "ModifiedAttributesSequence", "ModifyingDeviceID", "ModifyingDeviceManufacturer",
    "NameOfPhysiciansReadingStudy", "NamesOfIntendedRecipientsOfResults", "Occupation",
    "OperatorIdentificationSequence", "OperatorsName", "OriginalAttributesSequence", "OrderCallbackPhoneNumber",
    "OrderEnteredBy", "OrderEntererLocation", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "OverlayDate", "OverlayTime", "ParticipantSequence",
    "PatientAddress", "PatientAge", "PatientBirthDate", "PatientBirthName", "PatientBirthTime",
    "PatientComments", "PatientID", "PatientInstitutionResidence", "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName", "PatientName", "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence", "PatientReligiousPreference", "PatientSex",
    "PatientSexNeutered", "PatientSize", "PatientState", "PatientTelephoneNumbers",
    "PatientTransportArrangements", "PatientWeight", "PerformedLocation",
    "PerformedProcedureStepDescription", "PerformedProcedureStepEndDate", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence", "PerformedStationName",
    "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName", "PersonAddress", "PersonIdentificationCodeSequence", "PersonName",
    "PersonTelephoneNumbers", "PhysicianApprovingInterpretation", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "PlacerOrderNumberImagingServiceRequest", "PreMedication", "PregnancyStatus", "ProtocolName",
    "ReasonForStudy", "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence", "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers", "RegionOfResidence",
    "RequestAttributesSequence", "RequestedContrastAgent", "RequestedProcedureComments",
    "RequestedProcedureDescription", "RequestedProcedureID", "RequestedProcedureLocation",
    "RequestingPhysician", "RequestingService", "ResponsibleOrganization", "ResponsiblePerson",
    "ResultsComments", "ResultsDistributionListSequence", "ResultsIDIssuer", "ReviewerName",
    "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime", "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName",
    "ScheduledStationNameCodeSequence", "ScheduledStudyLocation", "ScheduledStudyLocationAETitle",
    "SeriesDate", "SeriesDescription", "SeriesTime", "ServiceEpisodeDescription", "ServiceEpisodeID",
    "SmokingStatus", "SourceImageSequence", "SpecialNeeds", "StationName", "StudyComments",
    "StudyDate", "StudyDescription", "StudyID", "StudyIDIssuer", "StudyTime", "TextComments",
    "TextString", "TimezoneOffsetFromUTC", "TopicAuthor", "TopicKeywords", "TopicSubject", "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence", "VerifyingObserverName", "VerifyingObserverSequence",
    "VerifyingOrganization", "VisitComments",
)

# Attributes whose *values* are registered for log redaction and output scans.
IDENTIFYING_VALUES = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthDate",
    "PatientBirthName", "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
    "AccessionNumber", "MedicalRecordLocator", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "InstitutionName", "InstitutionAddress", "StudyID", "AdmissionID",
)

# UIDs that are replaced (action U): a one-way hash keeps series together.
UID_ATTRIBUTES = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "MediaStorageSOPInstanceUID", "ReferencedSOPInstanceUID", "SynchronizationFrameOfReferenceUID",
    "IrradiationEventUID", "ConcatenationUID", "DimensionOrganizationUID",
)

REDACTED = "[redacted]"
_MIN_LEN = 3            # shorter values ("F", "12") would redact ordinary text
_lock = threading.Lock()
_registered: set[str] = set()


def _values(ds, keyword: str) -> list[str]:
    if keyword not in ds:
        return []
    value = ds[keyword].value
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    out = []
    for v in items:
        text = str(v).strip()
        if len(text) < _MIN_LEN:
            continue
        out.append(text)
        if "^" in text:                           # DICOM person names: Family^Given^Middle
            parts = [p for p in text.split("^") if p]
            out.extend(p for p in parts if len(p) >= _MIN_LEN)
            out.append(" ".join(parts))
            out.append(" ".join(reversed(parts)))
    return out


def identifiers_of(ds) -> set[str]:
    """The identifying values of a pydicom Dataset (names, IDs, dates, institution)."""
    found: set[str] = set()
    for kw in IDENTIFYING_VALUES:
        try:
            found.update(_values(ds, kw))
        except Exception:  # noqa: BLE001 - a malformed element identifies nothing usable
            continue
    return found


def register_identifiers(values: Iterable[str]) -> None:
    """Remember identifiers so that logs redact them and exports refuse them."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= _MIN_LEN)


def registered_identifiers() -> frozenset[str]:
    with _lock:
        return frozenset(_registered)


def clear_identifiers() -> None:
    with _lock:
        _registered.clear()


def redact(text: str, identifiers: Iterable[str] | None = None) -> str:
    ids = sorted(identifiers if identifiers is not None else registered_identifiers(),
                 key=len, reverse=True)
    for v in ids:
        text = re.sub(re.escape(v), REDACTED, text, flags=re.IGNORECASE)
    return text


class RedactingFilter(logging.Filter):
    """Replace registered identifiers in a log record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not registered_identifiers():
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - leave malformed records to logging itself
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of ``logger`` (default: root) and to the logger."""
    target = logger or logging.getLogger()
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _new_uid(old: str, salt: str) -> str:
    digest = int(hashlib.sha256((salt + old).encode()).hexdigest()[:30], 16)
    return f"2.25.{digest}"


def deidentify_dataset(ds, *, salt: str = "her2-workbench"):
    """Apply the Basic Profile to a pydicom Dataset in place and return it."""
    register_identifiers(identifiers_of(ds))
    for kw in BASIC_PROFILE_REMOVE:
        if kw in ds:
            del ds[kw]
    for kw in UID_ATTRIBUTES:
        if kw in ds and ds.data_element(kw).value:
            ds.data_element(kw).value = _new_uid(str(ds.data_element(kw).value), salt)
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
        old = str(ds.file_meta.MediaStorageSOPInstanceUID)
        ds.file_meta.MediaStorageSOPInstanceUID = _new_uid(old, salt)
    ds.remove_private_tags()
    for elem in list(ds):
        if elem.tag.group in range(0x5000, 0x5100, 2) or elem.tag.group in range(0x6000, 0x6100, 2):
            del ds[elem.tag]                      # curves and overlays (may hold burned-in text)
        elif elem.VR == "SQ":
            for item in elem.value:
                deidentify_dataset(item, salt=salt)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Basic Application Level Confidentiality Profile"
    return ds


def find_identifiers(paths: Iterable[str | Path], identifiers: Iterable[str] | None = None
                     ) -> list[tuple[str, str]]:
    """(file, identifier) for every registered identifier found in the given files."""
    ids = [v for v in (identifiers if identifiers is not None else registered_identifiers())
           if len(v) >= _MIN_LEN]
    hits = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            continue
        data = p.read_bytes()
        lower = data.lower()
        for v in ids:
            for enc in ("utf-8", "utf-16-le"):
                if v.lower().encode(enc, "ignore") in lower:
                    hits.append((str(p), v))
                    break
    return hits


BURNED_IN_TEXT_NOTICE = (
    "Ultrasound images may contain burned-in text (names, dates, IDs) in the pixels; "
    "the workbench does not detect or remove it. Check exported images before sharing them."
)
