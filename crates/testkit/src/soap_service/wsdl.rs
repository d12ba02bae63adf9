//! The service's WSDL.

use super::*;

/// The WSDL 1.1 description (document/literal, SOAP 1.1 and 1.2 bindings).
pub(super) fn wsdl_document(endpoint: &str) -> String {
    let endpoint = escape(endpoint);
    let ops = OPERATIONS;
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut bind11 = String::new();
    let mut bind12 = String::new();
    for op in ops {
        messages.push_str(&format!(
            "<wsdl:message name=\"{op}Request\"><wsdl:part name=\"parameters\" element=\"calc:{op}\"/></wsdl:message>\n\
             <wsdl:message name=\"{op}Response\"><wsdl:part name=\"parameters\" element=\"calc:{op}Response\"/></wsdl:message>\n"
        ));
        let fault_ref = if op == "Divide" {
            "<wsdl:fault name=\"DivideFault\" message=\"calc:DivideFault\"/>"
        } else {
            ""
        };
        port_ops.push_str(&format!(
            "<wsdl:operation name=\"{op}\"><wsdl:input message=\"calc:{op}Request\"/>\
             <wsdl:output message=\"calc:{op}Response\"/>{fault_ref}</wsdl:operation>\n"
        ));
        for (bindings, prefix) in [(&mut bind11, "soap"), (&mut bind12, "soap12")] {
            let fault = if op == "Divide" {
                format!(
                    "<wsdl:fault name=\"DivideFault\"><{prefix}:fault name=\"DivideFault\" use=\"literal\"/></wsdl:fault>"
                )
            } else {
                String::new()
            };
            let action = escape(soap_action_of(op));
            bindings.push_str(&format!(
                "<wsdl:operation name=\"{op}\"><{prefix}:operation soapAction=\"{action}\" style=\"document\"/>\
                 <wsdl:input><{prefix}:body use=\"literal\"/></wsdl:input>\
                 <wsdl:output><{prefix}:body use=\"literal\"/></wsdl:output>{fault}</wsdl:operation>\n"
            ));
        }
    }
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions name="Calc" targetNamespace="{CALC_NS}"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:calc="{CALC_NS}">
<wsdl:types>
<xsd:schema targetNamespace="{CALC_NS}" elementFormDefault="qualified">
<xsd:complexType name="TwoIntegers"><xsd:sequence><xsd:element name="a" type="xsd:long"/><xsd:element name="b" type="xsd:long"/></xsd:sequence></xsd:complexType>
<xsd:complexType name="Result"><xsd:sequence><xsd:element name="result" type="xsd:long"/></xsd:sequence></xsd:complexType>
<xsd:complexType name="Text"><xsd:sequence><xsd:element name="text" type="xsd:string"/></xsd:sequence></xsd:complexType>
<xsd:element name="Add" type="calc:TwoIntegers"/>
<xsd:element name="AddResponse" type="calc:Result"/>
<xsd:element name="Divide" type="calc:TwoIntegers"/>
<xsd:element name="DivideResponse" type="calc:Result"/>
<xsd:element name="DivideFault"><xsd:complexType><xsd:sequence><xsd:element name="dividend" type="xsd:long"/></xsd:sequence></xsd:complexType></xsd:element>
<xsd:element name="Echo" type="calc:Text"/>
<xsd:element name="EchoResponse" type="calc:Text"/>
<xsd:element name="Big"><xsd:complexType><xsd:sequence><xsd:element name="bytes" type="xsd:unsignedInt"/></xsd:sequence></xsd:complexType></xsd:element>
<xsd:element name="BigResponse"><xsd:complexType><xsd:sequence><xsd:element name="data" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
<xsd:element name="ConcatResponse" type="calc:Result"/>
</xsd:schema>
<xsd:schema targetNamespace="{CALC_NS}" elementFormDefault="unqualified">
<xsd:element name="Concat"><xsd:complexType><xsd:sequence><xsd:element name="a" type="xsd:string"/><xsd:element name="b" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
</xsd:schema>
</wsdl:types>
{messages}<wsdl:message name="DivideFault"><wsdl:part name="fault" element="calc:DivideFault"/></wsdl:message>
<wsdl:portType name="CalcPortType">
{port_ops}</wsdl:portType>
<wsdl:binding name="CalcSoap11" type="calc:CalcPortType">
<soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="document"/>
{bind11}</wsdl:binding>
<wsdl:binding name="CalcSoap12" type="calc:CalcPortType">
<soap12:binding transport="http://schemas.xmlsoap.org/soap/http" style="document"/>
{bind12}</wsdl:binding>
<wsdl:service name="CalcService">
<wsdl:port name="CalcSoap11Port" binding="calc:CalcSoap11"><soap:address location="{endpoint}"/></wsdl:port>
<wsdl:port name="CalcSoap12Port" binding="calc:CalcSoap12"><soap12:address location="{endpoint}"/></wsdl:port>
</wsdl:service>
</wsdl:definitions>
"#
    )
}
