"""WTForms for the portal. Every POST form carries a CSRF token (Flask-WTF); the queue's filter
form is a GET form and carries none."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (BooleanField, DateField, EmailField, HiddenField, IntegerField, MultipleFileField, PasswordField,
                     SelectField, SelectMultipleField, StringField, SubmitField, TextAreaField, TimeField)
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from core.platform.models import ROLES
from core.platform.numbers import parse_whole


class WholeNumberField(IntegerField):
    """IntegerField for ASCII digits only. WTForms reads a number with Python's int(), which also
    takes other scripts' digits and underscores: retention's "days=٥" offered to delete evidence
    older than 5 days, and "٥٠" points were stored as 50. Anything else is the field's error,
    with what was typed kept."""

    def process_formdata(self, valuelist):
        if valuelist and valuelist[0] not in ("", None) and parse_whole(valuelist[0]) is None:
            self.data = None
            raise ValueError(self.invalid_value_message or self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)


def choices(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms 3.3 wants them."""
    return [SelectChoice(value, label) for value, label in pairs]


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    submit = SubmitField("Sign in")


class LogoutForm(FlaskForm):
    submit = SubmitField("Sign out")


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token travels."""
    submit = SubmitField("Go")


# ---- uploader -----------------------------------------------------------------------------

class SubmissionForm(FlaskForm):
    activity_code = SelectField("Activity", validators=[DataRequired(message="Choose an activity.")])
    session_date = DateField("Session date", validators=[InputRequired(message="Give the date of the session.")])
    session_start = TimeField("Start time (optional, UTC)", validators=[Optional()])
    city = StringField("City (optional)", validators=[Optional(), Length(max=120)])
    note = TextAreaField("Note for the reviewer (optional)", validators=[Optional(), Length(max=2000)])
    files = MultipleFileField("Evidence files")
    submit = SubmitField("Send for review")


def submission_form_class(activities) -> type[SubmissionForm]:
    """The form with one number field per counter of each activity (AMPLIFY: peers, students).
    The catalogue is data the admins edit: portal/submission_form.py builds one per catalogue."""
    attrs = {}
    for activity in activities:
        for spec in activity.counters or []:
            name = f"counter_{spec['name']}"
            if name in attrs:
                continue
            low, high = int(spec.get("min", 0)), int(spec.get("max", 10_000))
            attrs[name] = WholeNumberField(
                f"{spec.get('label', spec['name'])} ({activity.name} only, {low} to {high})",
                validators=[Optional(), NumberRange(min=low, max=high, message=f"Enter a number from {low} to {high}.")])
    return type("DynamicSubmissionForm", (SubmissionForm,), attrs)


class ResubmitForm(FlaskForm):
    files = MultipleFileField("New or corrected files")
    submit = SubmitField("Resubmit for review")


# ---- reviewer -----------------------------------------------------------------------------

class QueueFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form: it changes nothing

    status = SelectField("Status", validators=[Optional()])
    activity = SelectField("Activity", validators=[Optional()])
    uploader = StringField("Uploader (name or e-mail)", validators=[Optional(), Length(max=200)])
    date_from = DateField("Session from", validators=[Optional()])
    date_to = DateField("Session to", validators=[Optional()])
    mine = BooleanField("Claimed by me")
    reviewed = BooleanField("Reviewed by me")
    sort = SelectField("Sort", choices=choices([("oldest", "Oldest first"), ("newest", "Newest first"),
                                                ("session_date", "Session date, earliest first"),
                                                ("-session_date", "Session date, latest first")]),
                       validators=[Optional()])
    submit = SubmitField("Filter")


class DecisionForm(FlaskForm):
    reason = TextAreaField("Reason (required to reject or request changes; shown to the uploader)",
                           validators=[Optional(), Length(max=2000)])
    approve = SubmitField("Approve and next")
    changes = SubmitField("Request changes and next")
    reject = SubmitField("Reject and next")
    queue = HiddenField()  # the queue's filters as a query string; portal/review.py cuts it to QS_MAX


class BulkForm(FlaskForm):
    reason = TextAreaField("Reason for all selected (required to reject)", validators=[Optional(), Length(max=2000)])
    approve = SubmitField("Approve selected")
    reject = SubmitField("Reject selected")


class RevokeForm(FlaskForm):
    reason = TextAreaField("Reason for revoking", validators=[DataRequired(message="Give a reason."), Length(max=2000)])
    submit = SubmitField("Revoke approval")


# ---- admin --------------------------------------------------------------------------------

ROLE_CHOICES = choices((r, r) for r in ROLES)


class NewUserForm(FlaskForm):
    # E-mail syntax is checked by core.accounts.users.create_user (no email_validator dependency).
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=320)])
    name = StringField("Name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    city = StringField("City", validators=[Optional(), Length(max=120)])
    password = PasswordField("Password (leave empty to generate one)", validators=[Optional(), Length(min=8, max=200)])
    submit = SubmitField("Create user")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    active = BooleanField("Active")
    submit = SubmitField("Save")


class ActivityForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    points = WholeNumberField("Points", validators=[InputRequired(message="Enter a whole number from 0 to 100000."),
                                                NumberRange(min=0, max=100_000, message="Enter a whole number from 0 to 100000.")])
    cap_points = WholeNumberField("Cap (points, empty for none)",
                              validators=[Optional(), NumberRange(min=0, max=1_000_000,
                                                                  message="Enter a whole number from 0 to 1000000, or leave it empty.")])
    cap_period = SelectField("Cap period", choices=choices((p, p) for p in ("none", "total", "once", "rolling_7d")))
    active = BooleanField("Active")
    submit = SubmitField("Save")


class TagForm(FlaskForm):
    tag = StringField("Kajabi tag", validators=[DataRequired("Give a tag name."), Length(max=200, message="A Kajabi tag has at most 200 characters.")])
    activity_code = SelectField("Activity")
    submit = SubmitField("Add mapping")


class AttachEventForm(FlaskForm):
    email = EmailField("User's e-mail", validators=[DataRequired(), Length(max=320)])
    submit = SubmitField("Attach and reprocess")


class RetentionForm(FlaskForm):
    days = WholeNumberField("Keep evidence for (days)", validators=[InputRequired(), NumberRange(min=1, max=36500)])
    dry_run = SubmitField("Dry run")
    run = SubmitField("Run now")


class HiddenIdForm(FlaskForm):
    item_id = HiddenField()
    submit = SubmitField("Go")


class NotificationsForm(FlaskForm):
    notify_email = BooleanField("E-mail me about my submissions")
    submit = SubmitField("Save")


class MultiCheckboxField(SelectMultipleField):
    """Checkboxes, one per choice (the files a correction may remove)."""
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class CorrectionForm(FlaskForm):
    """After "changes requested": every field of the submission form except the activity (its
    files are stored under it), plus files to remove and new ones to add."""
    session_date = DateField("Session date", validators=[InputRequired(message="Give the date of the session.")])
    session_start = TimeField("Start time (optional, UTC)", validators=[Optional()])
    city = StringField("City (optional)", validators=[Optional(), Length(max=120)])
    note = TextAreaField("Note for the reviewer (optional)", validators=[Optional(), Length(max=2000)])
    remove = MultiCheckboxField("Remove these files", validators=[Optional()])
    files = MultipleFileField("New or corrected files")
    submit = SubmitField("Resubmit for review")


def correction_form_class(activity) -> type[CorrectionForm]:
    """CorrectionForm with one number field per counter of this activity (AMPLIFY: peers, students)."""
    attrs = {}
    for spec in activity.counters or []:
        low, high = int(spec.get("min", 0)), int(spec.get("max", 10_000))
        attrs[f"counter_{spec['name']}"] = WholeNumberField(
            f"{spec.get('label', spec['name'])} ({low} to {high})",
            validators=[Optional(), NumberRange(min=low, max=high, message=f"Enter a number from {low} to {high}.")])
    return type("DynamicCorrectionForm", (CorrectionForm,), attrs)
