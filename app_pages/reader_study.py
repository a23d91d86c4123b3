"""Reader study - the reader's screen: sign in, read your queue unaided, then aided.

The page keeps only the signed-in ReaderSession in st.session_state; what to show next,
what was read and whether the model output may be shown are asked of the database
(ReaderStudyService) on every run, so a reader resumes exactly where they stopped.
"""
import streamlit as st

from webapp import reader_study as R
from webapp import widgets as W
from webapp.state import init_state

init_state(allow_during_reading=True)
st.title("Reader study")
W.disclaimer()

svc = R.service()
reader = st.session_state.get(R.READER_KEY)

# ----------------------------------------------------------------------------- sign in
if reader is None:
    st.markdown("Sign in with the study name and the personal access code the study owner gave you. "
                "Your reads are saved as you go; you can close the browser and sign in again later "
                "to carry on where you stopped.")
    with st.form("rs_signin"):
        studies = svc.list_studies()
        study = st.text_input("Study name", value=studies[0] if len(studies) == 1 else "",
                              key="rs_signin_study")
        code = st.text_input("Access code", type="password", key="rs_signin_code")
        go = st.form_submit_button("Sign in", type="primary")
    if go:
        try:
            st.session_state[R.READER_KEY] = svc.sign_in(study, code)
            R.remember_reader(st.session_state[R.READER_KEY])   # a reload resumes (URL token)
            st.rerun()
        except R.AccessDenied:
            st.error("Unknown study or wrong access code.", icon=":material/lock:")
        except Exception as err:  # noqa: BLE001
            W.show_error(err)
    st.stop()

# ----------------------------------------------------------------------------- queue
R.keep_resume_in_url()
try:
    nxt = svc.next_case(reader)
except R.AccessDenied:
    R.sign_out(R.READER_KEY)
    st.error("Your session no longer matches the study; please sign in again.")
    st.stop()

top1, top2 = st.columns([4, 1])
top1.markdown(f"**{reader.study_name}** - signed in as **{reader.reader_name}** "
              f"(R{reader.reader_number})")
if top2.button("Sign out", key="rs_signout", icon=":material/logout:"):
    R.sign_out(R.READER_KEY)
    st.rerun()
st.progress(nxt.done / max(nxt.total, 1), text=R.queue_caption(nxt))


def correction_box() -> None:
    """Correct my last read: appends a new read that supersedes it (reads are never edited)."""
    mine = [r for r in svc.my_reads(reader) if not r.superseded]
    if not mine:
        return
    last = mine[-1]
    with st.expander("Correct my last read", icon=":material/edit_note:"):
        call = "HER2-positive" if last.call_positive else "HER2-negative"
        st.caption(f"Last read: case {last.case_id}, {last.arm}: {call}, confidence "
                   f"{last.confidence:.0f}" + (" (a correction)" if last.supersedes_id else ""))
        if not last.correctable:
            st.info("This read can no longer be corrected (the model output of this case has "
                    "been shown since).")
            return
        with st.form(f"rs_correct_{last.read_id}"):
            c_call = st.radio("Call", ["HER2-positive", "HER2-negative"], horizontal=True,
                              index=0 if last.call_positive else 1, key=f"rs_ccall_{last.read_id}")
            c_low = c_low_conf = None
            if nxt.case is not None and nxt.case.ask_her2_low or last.her2_low_call is not None:
                c_low = st.radio("If HER2-negative", ["HER2-low", "HER2-zero"], horizontal=True,
                                 index=None if last.her2_low_call is None else (0 if last.her2_low_call else 1),
                                 key=f"rs_clow_{last.read_id}")
                c_low_conf = st.slider("Confidence in HER2-low / HER2-zero", 0, 100,
                                       int(round(last.her2_low_confidence
                                                 if last.her2_low_confidence is not None else 50)),
                                       key=f"rs_clowconf_{last.read_id}")
            c_conf = st.slider("Confidence", 0, 100, int(round(last.confidence)),
                               key=f"rs_cconf_{last.read_id}")
            reason = st.text_input("Reason for the correction", key=f"rs_creason_{last.read_id}")
            ok = st.form_submit_button("Save the correction")
        if ok:
            try:
                pos = c_call == "HER2-positive"
                low = None if pos or c_low is None else c_low == "HER2-low"
                svc.correct_read(reader, last.read_id, call_positive=pos, confidence=float(c_conf),
                                 her2_low_call=low, reason=reason or None,
                                 her2_low_confidence=None if low is None else float(c_low_conf))
                st.toast("Correction saved")
                st.rerun()
            except Exception as err:  # noqa: BLE001
                W.show_error(err)


if nxt.status == "done":
    st.success(f"You have read all {nxt.total} steps of this study. Thank you!",
               icon=":material/task_alt:")
    correction_box()
    st.stop()
if nxt.status == "washout":
    st.info(f"Washout: the aided session opens on {nxt.available_at:%Y-%m-%d %H:%M} UTC. "
            "Please come back then.", icon=":material/schedule:")
    correction_box()
    st.stop()

# ----------------------------------------------------------------------------- reading
cv = nxt.case
# one container per step: when the step changes, the previous step's elements (its model
# panels included) are replaced at once instead of lingering while the new step renders
step = st.container(key=f"rs_step_{cv.queue_item_id}")
with step:
    allowed = cv.arm == "aided" and svc.model_output_allowed(reader, cv.case_id)
    st.subheader(f"Case {cv.case_id} - {'unaided' if cv.arm == 'unaided' else 'aided'} read")
    case = R.reading_case(cv.cohort_root, cv.case_id)
    # the region the model scored is part of the model output: shown with it, aided arm only
    roi = R.model_roi(cv.cohort_root, case) if allowed and cv.model_output is not None else None
    if case is None:
        st.warning("The images of this case are not available on this server "
                   f"(cohort folder: {cv.cohort_root or 'not recorded'}). Tell the study owner.")
    else:
        R.reading_viewer(case, key=f"rs_view_{cv.case_id}", roi=roi)

    shown_panels: list[str] = []
    if cv.arm == "aided":
        st.markdown("### Model output")
        if allowed and cv.model_output is not None:
            shown_panels = R.model_panels(cv.model_output, case, cv.cohort_root,
                                          ask_her2_low=cv.ask_her2_low)
            if roi is not None:
                shown_panels.append("roi_outline")
        elif allowed:
            st.info("This study has no model output for this case.", icon=":material/block:")
        else:  # the service withholds it: never shown before the unaided read is saved
            st.info("The model output is shown once your unaided read of this case is saved.")

    with st.form(f"rs_read_{cv.queue_item_id}", clear_on_submit=False):
        st.markdown(f"**Your {cv.arm} read**")
        call = st.radio("Call", ["HER2-positive", "HER2-negative"], index=None, horizontal=True,
                        key=f"rs_call_{cv.queue_item_id}")
        conf = st.slider("Confidence (0 = guess, 100 = certain)", 0, 100, 50,
                         key=f"rs_conf_{cv.queue_item_id}")
        low = low_conf = None
        if cv.ask_her2_low:
            low = st.radio("If HER2-negative: HER2-low or HER2-zero?", ["HER2-low", "HER2-zero"],
                           index=None, horizontal=True, key=f"rs_low_{cv.queue_item_id}")
            low_conf = st.slider("Confidence in HER2-low / HER2-zero (0 = guess, 100 = certain)",
                                 0, 100, 50, key=f"rs_lowconf_{cv.queue_item_id}",
                                 help="gives the HER2-low task its ROC and MRMC analysis")
        notes = st.text_area("Notes (optional)", key=f"rs_notes_{cv.queue_item_id}", height=80)
        save = st.form_submit_button("Save read", type="primary", icon=":material/save:")
    if save:
        if call is None:
            st.error("Choose HER2-positive or HER2-negative before saving.")
        elif cv.ask_her2_low and call == "HER2-negative" and low is None:
            st.error("This study also asks HER2-low or HER2-zero for a HER2-negative call.")
        else:
            pos = call == "HER2-positive"
            try:
                low_call = None if (pos or not cv.ask_her2_low) else low == "HER2-low"
                svc.save_read(reader, cv.queue_item_id, call_positive=pos, confidence=float(conf),
                              her2_low_call=low_call, notes=notes or None,
                              her2_low_confidence=None if low_call is None else float(low_conf),
                              client_shown={"panels": shown_panels, "images": bool(case)})
                st.rerun()
            except Exception as err:  # noqa: BLE001
                W.show_error(err)
correction_box()
