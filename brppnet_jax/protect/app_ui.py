"""The web app's page (Gradio Blocks): photo and request in; protected image, mask and report out.

Two API endpoints, the same functions the page calls: `/protect` (photo, request lines,
method, threshold, margin -> protected PNG, mask overlay PNG, report, details) and
`/transcribe` (WAV -> request text).
"""

from __future__ import annotations

import base64

import gradio as gr
from gradio import data_classes

from brppnet_jax.protect import app_service
from brppnet_jax.protect import hiding
from brppnet_jax.protect import photo as photo_lib

_INTRO = """# Protect a person in a photo
Add a photo, say or type whom to hide (one request per line for several people), press
**Protect**, and download the result (PNG, without the photo's metadata). Nothing is kept:
the photo is deleted from the server as soon as it is read, and results are sent back, never stored.
"""


def _photo_input(**options) -> gr.Image:
  """An image input that hands over the uploaded file's path without opening it, so a
  non-image or a decompression bomb gets our one-line message instead of Gradio's.

  The instance's method is replaced rather than gr.Image subclassed: Gradio writes a .pyi
  file beside the module of every Component subclass.
  """
  component = gr.Image(type="filepath", **options)
  default = component.preprocess

  def preprocess(payload):
    if payload is None or payload.path is None:
      return default(payload)  # None, or a data: URL (decoded by Gradio).
    return payload.path
  component.preprocess = preprocess
  return component


def _png_output(**options) -> gr.Image:
  """An image output sent inside the response as a PNG data URL: no file on the server, and
  no metadata (the PNG is written from bare pixels)."""
  component = gr.Image(format="png", buttons=["download", "fullscreen"], **options)

  def postprocess(value):
    if value is None:
      return None
    png = photo_lib.encode(value, "PNG")
    return data_classes.ImageData(url="data:image/png;base64," + base64.b64encode(png).decode(),
                                  orig_name="protected.png")
  component.postprocess = postprocess
  return component


def build(service: app_service.Service, forget_after_s: int) -> gr.Blocks:
  """The page; `forget_after_s` bounds how long an upload that was never submitted stays."""
  with gr.Blocks(title="Protect a person", analytics_enabled=False,
                 delete_cache=(max(1, min(60, forget_after_s)), forget_after_s)) as page:
    gr.Markdown(_INTRO)
    gr.Markdown(f"**The network:** {service.description}", elem_id="trained-on")
    # (upload path, pixels): in memory, for this tab only; Gradio drops it when the tab
    # closes, and after forget_after_s at the latest.
    session_photo = gr.State(None, time_to_live=forget_after_s)
    with gr.Row():
      with gr.Column():
        photo_in = _photo_input(sources=["upload", "webcam", "clipboard"], label="Photo",
                                elem_id="photo", buttons=["fullscreen"])
        audio_in = gr.Audio(sources=["microphone", "upload"], type="filepath",
                            label="Say whom to hide (the words show in the request box)",
                            elem_id="voice", buttons=[], visible=service.can_transcribe)
        text_in = gr.Textbox(label="Request", lines=3, elem_id="request",
                             placeholder="protect privacy of man in red shirt")
        with gr.Row():
          method_in = gr.Radio(list(app_service.METHODS), value=hiding.DEFAULT_METHOD,
                               label="Method", elem_id="method")
          threshold_in = gr.Slider(0.05, 1.0, value=hiding.MASK_THRESHOLD, step=0.05,
                                   label="Threshold", info="probability that is hidden",
                                   elem_id="threshold")
          margin_in = gr.Slider(0.0, 0.3, value=hiding.DEFAULT_MARGIN, step=0.01, label="Margin",
                                info="share of the person's size", elem_id="margin")
        button = gr.Button("Protect", variant="primary", elem_id="protect")
      with gr.Column():
        # No "share" buttons: they would send the image to Hugging Face.
        protected_out = _png_output(label="Protected", elem_id="protected")
        overlay_out = _png_output(label="Mask over the photo", elem_id="overlay")
        report_out = gr.Markdown(elem_id="report")
        details_out = gr.JSON(label="Details", visible=False)

    def protect(path, text, method, threshold, margin, cached):
      try:
        if path is None:
          raise app_service.UserError("Add a photo first (upload, webcam or paste).")
        if cached is not None and cached[0] == path:
          rgb = cached[1]
          app_service.forget(path)  # Uploaded again (an API client): still not kept.
        else:
          rgb = service.read_photo(path)
        answer = service.protect(rgb, text, method, threshold, margin)
      except app_service.UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
      if answer.warning:
        gr.Warning(answer.warning)
      return (answer.protected, answer.overlay, answer.report, answer.details, (path, rgb))

    def transcribe(path, text):
      if path is None:
        return gr.skip()
      try:
        heard = service.transcribe(path)
      except app_service.UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
      lines = [line for line in (text or "").splitlines() if line.strip()]
      return "\n".join(lines + [heard])

    button.click(protect, [photo_in, text_in, method_in, threshold_in, margin_in, session_photo],
                 [protected_out, overlay_out, report_out, details_out, session_photo],
                 api_name="protect", concurrency_limit=2)
    audio_in.stop_recording(transcribe, [audio_in, text_in], text_in, api_name="transcribe")
    audio_in.upload(transcribe, [audio_in, text_in], text_in, api_name=False)
  return page
