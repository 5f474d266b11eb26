from __future__ import annotations

from django import forms
from django.conf import settings

from monitor.models import SLUG_VALIDATOR, validate_output_policy


class RegisterModelForm(forms.Form):
    slug = forms.CharField(max_length=64, validators=[SLUG_VALIDATOR], help_text="e.g. credit-scoring-v3")
    name = forms.CharField(max_length=200)
    team = forms.CharField(max_length=100, required=False, help_text="the team that owns the model")
    artifact = forms.FileField(required=False, help_text="a skops (.skops), ONNX (.onnx), XGBoost (.json, .ubj) or LightGBM (.txt) file; pickles are refused")
    endpoint = forms.URLField(required=False, assume_scheme="https", help_text="or a remote endpoint answering POST {\"instances\": [[...]]}")
    label_column = forms.CharField(max_length=200, help_text="the column of the CSVs that holds the true class")
    id_column = forms.CharField(max_length=200, required=False, help_text="optional: a record id column")
    output_policy = forms.CharField(max_length=40, initial="full", validators=[validate_output_policy],
                                    help_text="full, round:K, label or noise:SCALE")
    members = forms.FileField(help_text="CSV: a sample of the training records, with labels")
    nonmembers = forms.FileField(help_text="CSV: held-out records from the same distribution")
    population = forms.FileField(required=False, help_text="CSV, optional: more records for reference models")

    # Uploads are streamed to disk by Django; an oversized one is refused from its size, never read into memory.
    def _within(self, name: str, setting: str):
        file = self.cleaned_data.get(name)
        limit = getattr(settings, setting)
        if file and file.size > limit:
            raise forms.ValidationError(f"the file is {file.size:,} bytes; the limit is {limit:,} bytes ({setting})")
        return file

    def clean_artifact(self):
        return self._within("artifact", "ARTIFACT_MAX_BYTES")

    def clean_members(self):
        return self._within("members", "DATASET_MAX_BYTES")

    def clean_nonmembers(self):
        return self._within("nonmembers", "DATASET_MAX_BYTES")

    def clean_population(self):
        return self._within("population", "DATASET_MAX_BYTES")

    def clean(self) -> dict:
        data = super().clean()
        if "artifact" in self.errors or "endpoint" in self.errors:
            return data  # the field's own error says what is wrong with it
        if bool(data.get("artifact")) == bool(data.get("endpoint")):
            raise forms.ValidationError("Give exactly one prediction source: an artifact file or an endpoint URL.")
        return data


class CandidateForm(forms.Form):
    """A candidate for the privacy gate, uploaded on the model page (the API takes the same fields)."""

    artifact = forms.FileField(help_text="the candidate: skops (.skops), XGBoost (.json, .ubj) or LightGBM (.txt), "
                                         "answering for this model's features and classes")
    members = forms.FileField(required=False, help_text="CSV, optional: its own training records, if it trained on "
                                                        "new data (the model's feature and label columns)")
    id_column = forms.CharField(required=False, max_length=200, help_text="the members file's id column, if any")


class PromoteForm(forms.Form):
    reason = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="required when the gate did not pass: kept in the trail and the evidence")
